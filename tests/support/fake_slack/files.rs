//! Slack's external upload flow, as the fake speaks it: the bot asks
//! `files.getUploadURLExternal` for an upload URL (declaring the file's name
//! and length), POSTs the bytes there (answered `OK - <length>` in plain
//! text, as files.slack.com does), then shares the file in a thread with
//! `files.completeUploadExternal`.
//!
//! The fake checks what arrives: the bytes must be as long as declared, and
//! each upload is decoded as a PNG where it claims to be one, so a test
//! reads the image's size and whether it was a PNG at all.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{FakeState, Shared};

/// One file, from its upload URL to its share.
#[derive(Clone, Debug, Default)]
pub struct SharedFile {
    pub id: String,
    pub filename: String,
    /// The length declared in `files.getUploadURLExternal`.
    pub declared_length: usize,
    pub alt_txt: Option<String>,
    /// What was POSTed to the upload URL (the last POST, after retries).
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// How many times bytes were POSTed to its URL.
    pub posts: usize,
    /// The PNG's width and height, when the bytes decode as one.
    pub png_size: Option<(u32, u32)>,
    /// Set by `files.completeUploadExternal`.
    pub title: Option<String>,
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
}

impl SharedFile {
    /// Shared in a thread, with bytes of the declared length.
    pub fn is_complete(&self) -> bool {
        self.channel.is_some() && self.bytes.len() == self.declared_length && self.posts > 0
    }
}

#[derive(Default)]
pub(super) struct FilesState {
    files: Vec<SharedFile>,
}

/// `files.getUploadURLExternal`: `filename` and `length` are required.
pub(super) fn upload_url(
    state: &mut FakeState,
    port: u16,
    p: &Map<String, Value>,
) -> Result<Value, &'static str> {
    let filename = super::web_api::str_param(p, "filename").ok_or("invalid_arguments")?;
    let length = super::web_api::str_param(p, "length")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .ok_or("invalid_arguments")?;
    let id = format!("F{:08}", state.files.files.len() + 1);
    state.files.files.push(SharedFile {
        id: id.clone(),
        filename,
        declared_length: length,
        alt_txt: super::web_api::str_param(p, "alt_txt"),
        ..SharedFile::default()
    });
    Ok(json!({
        "upload_url": format!("http://127.0.0.1:{port}/upload/{id}"),
        "file_id": id,
    }))
}

/// The upload URL: the bytes, as the body. A length other than the one
/// declared is refused, as Slack's upload server does.
pub(super) async fn upload_bytes(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.state();
    let Some(file) = state.files.files.iter_mut().find(|f| f.id == id) else {
        return (StatusCode::NOT_FOUND, "no such upload").into_response();
    };
    file.posts += 1;
    file.content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if body.len() != file.declared_length {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "length {} is not the declared {}",
                body.len(),
                file.declared_length
            ),
        )
            .into_response();
    }
    file.bytes = body.to_vec();
    file.png_size = png_size(&file.bytes);
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (plain, format!("OK - {}", body.len())).into_response()
}

/// The size of a PNG whose image decodes in full; `None` for anything else.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().ok()?;
    let mut pixels = vec![0; reader.output_buffer_size()?];
    let frame = reader.next_frame(&mut pixels).ok()?;
    Some((frame.width, frame.height))
}

/// `files.completeUploadExternal`: `files` (JSON: `[{"id","title"}]`),
/// `channel_id`, `thread_ts`. A file whose bytes never arrived in full is
/// `file_not_found`, as Slack says.
pub(super) fn complete(
    state: &mut FakeState,
    p: &Map<String, Value>,
) -> Result<Value, &'static str> {
    let files = match p.get("files") {
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|_| "invalid_arguments")?,
        Some(value) => value.clone(),
        None => return Err("invalid_arguments"),
    };
    let files = files.as_array().ok_or("invalid_arguments")?.clone();
    let channel = super::web_api::str_param(p, "channel_id");
    let thread_ts = super::web_api::str_param(p, "thread_ts");
    let mut shared = Vec::new();
    for entry in &files {
        let id = entry["id"].as_str().ok_or("invalid_arguments")?;
        let file = state
            .files
            .files
            .iter_mut()
            .find(|f| f.id == id && f.bytes.len() == f.declared_length && f.posts > 0)
            .ok_or("file_not_found")?;
        file.title = entry["title"].as_str().map(str::to_owned);
        file.channel = channel.clone();
        file.thread_ts = thread_ts.clone();
        shared.push(json!({"id": id, "title": file.title}));
    }
    Ok(json!({ "files": shared }))
}

impl super::FakeSlack {
    /// Every file the bot asked to upload, in order, however far it got.
    pub fn files(&self) -> Vec<SharedFile> {
        self.shared.state().files.files.clone()
    }
}
