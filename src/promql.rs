//! `{cluster}` and `{env}` in a gate's query.
//!
//! A placeholder may only stand inside a quoted PromQL string (a label
//! value: `cluster="{cluster}"`), and the name put there is escaped for that
//! string, so no cluster name can end the string and change the query. After
//! `=~` or `!~` the string is a regular expression, and the name is also
//! regex-escaped so that it matches only itself (`.` in a DNS name is not
//! "any character"). In a raw (backtick) string nothing can be escaped, so a
//! placeholder there is refused; so is one outside a string, and an unknown
//! `{name}` inside one (a typo such as `{clsuter}` would otherwise match
//! nothing, which looks like "no data").

use std::fmt::Write as _;

/// The names put into a query.
#[derive(Clone, Copy, Debug)]
pub struct QueryContext<'a> {
    pub env: &'a str,
    pub cluster: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "{placeholder} must stand inside a quoted label value, e.g. cluster=\"{placeholder}\""
    )]
    OutsideString { placeholder: String },
    #[error("{placeholder} cannot be escaped in a `backtick` string: use double quotes")]
    InRawString { placeholder: String },
    #[error("unknown placeholder {placeholder}: only {{cluster}} and {{env}} are replaced")]
    Unknown { placeholder: String },
    #[error("a quoted string is not closed")]
    Unterminated,
}

/// The query with the placeholders replaced.
pub fn render(template: &str, context: QueryContext<'_>) -> Result<String, TemplateError> {
    Renderer::new(template, context).run()
}

/// Checks a template without names at hand (config validation).
pub fn check(template: &str) -> Result<(), TemplateError> {
    render(
        template,
        QueryContext {
            env: "env",
            cluster: "cluster",
        },
    )
    .map(|_| ())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Comment,
    /// Inside a `"…"` or `'…'` string; `regex` after `=~` / `!~`.
    Quoted {
        quote: char,
        regex: bool,
    },
    Raw,
}

struct Renderer<'a> {
    rest: &'a str,
    context: QueryContext<'a>,
    out: String,
    state: State,
}

impl<'a> Renderer<'a> {
    fn new(template: &'a str, context: QueryContext<'a>) -> Self {
        Self {
            rest: template,
            context,
            out: String::with_capacity(template.len() + 32),
            state: State::Code,
        }
    }

    fn run(mut self) -> Result<String, TemplateError> {
        while let Some(c) = self.rest.chars().next() {
            if let Some(placeholder) = self.placeholder_here() {
                self.placeholder(placeholder)?;
                continue;
            }
            self.rest = &self.rest[c.len_utf8()..];
            self.out.push(c);
            self.after(c)?;
        }
        match self.state {
            State::Quoted { .. } | State::Raw => Err(TemplateError::Unterminated),
            State::Code | State::Comment => Ok(self.out),
        }
    }

    /// A `{identifier}` at the start of the rest.
    fn placeholder_here(&self) -> Option<&'a str> {
        let inner = self.rest.strip_prefix('{')?;
        let end = inner.find('}')?;
        let name = &inner[..end];
        let is_identifier = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        is_identifier.then(|| &self.rest[..end + 2])
    }

    fn placeholder(&mut self, placeholder: &'a str) -> Result<(), TemplateError> {
        let value = match placeholder {
            "{cluster}" => Some(self.context.cluster),
            "{env}" => Some(self.context.env),
            _ => None,
        };
        let owned = || placeholder.to_owned();
        match (self.state, value) {
            (State::Quoted { quote, regex }, Some(value)) => {
                let value = if regex {
                    regex_escape(value)
                } else {
                    value.to_owned()
                };
                push_string_escaped(&mut self.out, &value, quote);
            }
            (State::Quoted { .. }, None) => {
                return Err(TemplateError::Unknown {
                    placeholder: owned(),
                })
            }
            (State::Raw, Some(_)) => {
                return Err(TemplateError::InRawString {
                    placeholder: owned(),
                })
            }
            (State::Code, Some(_)) => {
                return Err(TemplateError::OutsideString {
                    placeholder: owned(),
                })
            }
            // `{job}`-like text in code is a matcher body such as `up{job}`,
            // invalid PromQL that Prometheus reports; in a comment or raw
            // string it is text.
            (_, None) => self.out.push_str(placeholder),
            (State::Comment, Some(_)) => self.out.push_str(placeholder),
        }
        self.rest = &self.rest[placeholder.len()..];
        Ok(())
    }

    /// Moves the state on after `c` was copied.
    fn after(&mut self, c: char) -> Result<(), TemplateError> {
        self.state = match (self.state, c) {
            (State::Code, '"' | '\'') => State::Quoted {
                quote: c,
                regex: self.out[..self.out.len() - 1].trim_end().ends_with(['~']),
            },
            (State::Code, '`') => State::Raw,
            (State::Code, '#') => State::Comment,
            (State::Comment, '\n') => State::Code,
            (State::Quoted { .. }, '\\') => {
                // Copy the escaped character as it is.
                let next = self
                    .rest
                    .chars()
                    .next()
                    .ok_or(TemplateError::Unterminated)?;
                self.rest = &self.rest[next.len_utf8()..];
                self.out.push(next);
                self.state
            }
            (State::Quoted { quote, .. }, c) if c == quote => State::Code,
            (State::Raw, '`') => State::Code,
            (state, _) => state,
        };
        Ok(())
    }
}

/// Escapes `value` for a PromQL string quoted with `quote` (Go's escapes).
fn push_string_escaped(out: &mut String, value: &str, quote: char) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// RE2's `QuoteMeta`: the value as a regex that matches only itself.
fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(cluster: &str, template: &str) -> Result<String, TemplateError> {
        render(
            template,
            QueryContext {
                env: "prod",
                cluster,
            },
        )
    }

    #[test]
    fn replaces_both_placeholders_in_label_values() {
        assert_eq!(
            with(
                "k8s-blue",
                r#"sum(rate(x{cluster="{cluster}",env='{env}'}[1m]))"#
            )
            .unwrap(),
            r#"sum(rate(x{cluster="k8s-blue",env='prod'}[1m]))"#
        );
    }

    #[test]
    fn a_name_cannot_end_the_string() {
        let evil = r#"a"} or vector(1) # \"#;
        assert_eq!(
            with(evil, r#"x{cluster="{cluster}"}"#).unwrap(),
            r#"x{cluster="a\"} or vector(1) # \\"}"#
        );
        assert_eq!(
            with("it's\n", r#"x{cluster='{cluster}'}"#).unwrap(),
            r#"x{cluster='it\'s\n'}"#
        );
        assert_eq!(
            with("a\u{1}b", r#"x{c="{cluster}"}"#).unwrap(),
            r#"x{c="a\u0001b"}"#
        );
    }

    #[test]
    fn after_a_regex_matcher_the_name_matches_only_itself() {
        assert_eq!(
            with("k8s-a.example.com", r#"x{cluster=~"{cluster}"}"#).unwrap(),
            r#"x{cluster=~"k8s-a\\.example\\.com"}"#
        );
        assert_eq!(
            with("a|b", r#"x{cluster !~ "{cluster}|other"}"#).unwrap(),
            r#"x{cluster !~ "a\\|b|other"}"#
        );
        // `=` then a string: not a regex.
        assert_eq!(with("a.b", r#"x{c="{cluster}"}"#).unwrap(), r#"x{c="a.b"}"#);
    }

    #[test]
    fn refuses_placeholders_it_cannot_escape() {
        assert_eq!(
            check("up{cluster={cluster}}"),
            Err(TemplateError::OutsideString {
                placeholder: "{cluster}".into()
            })
        );
        assert_eq!(
            check("label_replace(up, \"a\", `{env}`, \"b\", \"c\")"),
            Err(TemplateError::InRawString {
                placeholder: "{env}".into()
            })
        );
        assert_eq!(
            check(r#"up{cluster="{clsuter}"}"#),
            Err(TemplateError::Unknown {
                placeholder: "{clsuter}".into()
            })
        );
        assert_eq!(
            check(r#"up{cluster="{cluster}}"#),
            Err(TemplateError::Unterminated)
        );
    }

    /// Go's unquoting of a double-quoted PromQL string body, for the escapes
    /// [`push_string_escaped`] writes.
    fn unquote(body: &str) -> String {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                }
                Some(other) => out.push(other),
                None => panic!("dangling backslash in {body:?}"),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn any_name_comes_back_out_of_its_string(cluster in "\\PC*|[\"\\\\\n\t\u{1}a.]{0,12}") {
            let rendered = with(&cluster, r#"x{c="{cluster}"}"#).unwrap();
            let body = rendered
                .strip_prefix("x{c=\"")
                .and_then(|r| r.strip_suffix("\"}"))
                .unwrap();
            // No unescaped quote inside: the string ends where it should.
            let mut escaped = false;
            for c in body.chars() {
                proptest::prop_assert!(escaped || c != '"', "{rendered}");
                escaped = !escaped && c == '\\';
            }
            proptest::prop_assert_eq!(unquote(body), cluster);
        }

        #[test]
        fn any_template_renders_or_is_refused_without_panicking(template in "\\PC*|[{}\"'`#~=a-z\\\\\n]{0,24}") {
            let _ = with("a.b", &template);
        }
    }

    #[test]
    fn escaped_quotes_and_comments_do_not_confuse_it() {
        assert_eq!(
            with("b", r#"x{a="q\"{cluster}"} # {cluster} here is a comment"#).unwrap(),
            r#"x{a="q\"b"} # {cluster} here is a comment"#
        );
        assert_eq!(
            with("b", "x{a=\"{cluster}\"} # c\n+ y{a=\"{cluster}\"}").unwrap(),
            "x{a=\"b\"} # c\n+ y{a=\"b\"}"
        );
        // Regex quantifiers are not placeholders.
        assert_eq!(with("b", r#"x{a=~"a{2}"}"#).unwrap(), r#"x{a=~"a{2}"}"#);
        assert!(check("up").is_ok());
    }
}
