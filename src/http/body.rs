//! STUB
use super::error::ParseError;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub consumed: usize,
    pub done: bool,
}
#[derive(Debug)]
pub struct LengthDecoder {
    pub remaining: u64,
}
impl LengthDecoder {
    pub fn new(len: u64) -> Self {
        LengthDecoder { remaining: len }
    }
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<Decoded, ParseError> {
        let n = (self.remaining.min(input.len() as u64) as usize).min(max);
        out.extend_from_slice(&input[..n]);
        self.remaining -= n as u64;
        Ok(Decoded { consumed: n, done: self.remaining == 0 })
    }
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}
#[derive(Debug, Default)]
pub struct ChunkedDecoder {}
impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {}
    }
    pub fn decode(&mut self, _input: &[u8], _out: &mut Vec<u8>, _max: usize) -> Result<Decoded, ParseError> {
        Err(ParseError::Bad("chunked stub".into()))
    }
    pub fn is_done(&self) -> bool {
        false
    }
}
