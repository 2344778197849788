//! Whether the bot checks a cluster's certificate. A kubeconfig context
//! with `insecure-skip-tls-verify: true` lets anyone on the path to the
//! API server pose as the cluster, read the bot's token and answer its
//! identity check: the bot refuses it unless the operator passes
//! `--dangerously-skip-tls-verify` (issue 14, item 6).

/// The flag that lets such a context through; its name says what it costs.
pub const DANGEROUS_FLAG: &str = "--dangerously-skip-tls-verify";

/// Whether a context may skip checking the cluster's certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVerification {
    /// Every context checks the certificate (the default).
    #[default]
    Required,
    /// A context that says `insecure-skip-tls-verify` is used as it is
    /// ([`DANGEROUS_FLAG`]), with a warning in the log.
    DangerouslySkippable,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("context {context} sets insecure-skip-tls-verify: anyone on the way could pose as the cluster; give its CA (certificate-authority-data) instead, or pass {DANGEROUS_FLAG}")]
    InsecureSkipTlsVerify { context: String },
}

/// Refuses `context` if its client would not check the certificate and
/// `tls` does not allow that.
pub fn check(context: &str, config: &kube::Config, tls: TlsVerification) -> Result<(), TlsError> {
    if !config.accept_invalid_certs {
        return Ok(());
    }
    match tls {
        TlsVerification::Required => Err(TlsError::InsecureSkipTlsVerify {
            context: context.to_owned(),
        }),
        TlsVerification::DangerouslySkippable => {
            tracing::warn!(
                context,
                "the cluster's certificate is not checked ({DANGEROUS_FLAG})"
            );
            Ok(())
        }
    }
}
