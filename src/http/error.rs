//! STUB
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("bad request: {0}")]
    Bad(String),
}
impl ParseError {
    pub fn status(&self) -> u16 {
        400
    }
}
pub fn error_response(err: &ParseError) -> Vec<u8> {
    let body = format!("{err}\n");
    format!(
        "HTTP/1.1 {} Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        err.status(),
        body.len()
    )
    .into_bytes()
}
