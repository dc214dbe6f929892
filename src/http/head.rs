//! STUB
use super::error::ParseError;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}
impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub request_line: usize,
    pub fields: usize,
    pub field_size: usize,
}
impl Default for Limits {
    fn default() -> Self {
        Limits { request_line: 4094, fields: 100, field_size: 8190 }
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: Vec<u8>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub fields: Vec<Field>,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub expect_continue: bool,
}
impl Head {
    pub fn path_and_query(&self) -> (&str, &str) {
        let t = self.target.split('#').next().unwrap_or("");
        t.split_once('?').unwrap_or((t, ""))
    }
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| &f.value[..])
    }
}
pub fn parse_head(buf: &[u8], _limits: &Limits) -> Result<Option<(Head, usize)>, ParseError> {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(ParseError::Bad(e.to_string())),
        Ok(httparse::Status::Complete(n)) => {
            let version = if req.version == Some(0) { Version::Http10 } else { Version::Http11 };
            let fields: Vec<Field> = req.headers.iter().map(|h| Field { name: h.name.to_string(), value: h.value.to_vec() }).collect();
            let mut head = Head { method: req.method.unwrap().to_string(), target: req.path.unwrap().to_string(), version, fields, body: BodyKind::Empty, keep_alive: version == Version::Http11, expect_continue: false };
            if let Some(cl) = head.field("content-length") { head.body = BodyKind::Length(std::str::from_utf8(cl).unwrap().parse().unwrap()); }
            if head.field("transfer-encoding").is_some() { head.body = BodyKind::Chunked; }
            if let Some(c) = head.field("connection") { let c = String::from_utf8_lossy(c).to_ascii_lowercase(); if c.contains("close") { head.keep_alive = false } if c.contains("keep-alive") { head.keep_alive = true } }
            head.expect_continue = head.field("expect").is_some();
            Ok(Some((head, n)))
        }
    }
}
