//! A protobuf wire-format reader: just enough to walk `saved_model.pb`.
//!
//! The `tensorflow` crate parses the MetaGraphDef with its own generated types but keeps them
//! private, exposing only signatures of the meta graph it loaded. [`inspect`](super::inspect)
//! needs more (the tags of every meta graph, the object graph's variables and slot variables,
//! TF1 graphs' variable ops), so [`super::saved_model_pb`] reads those few fields directly
//! with this reader. Unknown fields are skipped, as protobuf requires; field numbers are those
//! of TensorFlow's `.proto` files and are stable by protobuf's compatibility rules.

/// One field's value, as the wire format carries it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Malformed protobuf data. No help: the file it is read from says what to do
/// ([`super::SavedModelError::Malformed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("{0}")]
pub struct ProtoError(pub String);

/// Iterates over the `(field number, value)` pairs of one message.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The fields of the message encoded in `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0 }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or_else(|| ProtoError(format!("truncated varint at byte {}", self.pos)))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError(format!("varint longer than 10 bytes at byte {}", self.pos)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let end = end.ok_or_else(|| ProtoError(format!("field of {n} bytes at byte {} runs past the end", self.pos)))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn next_field(&mut self) -> Result<(u32, Value<'a>), ProtoError> {
        let key = self.varint()?;
        let number = (key >> 3) as u32;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => {
                let len = self.varint()? as usize;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            wire => return Err(ProtoError(format!("unsupported wire type {wire} (field {number})"))),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let field = self.next_field();
        if field.is_err() {
            self.pos = self.buf.len();
        }
        Some(field)
    }
}

impl<'a> Value<'a> {
    /// A length-delimited field: an embedded message, string or bytes.
    pub fn bytes(self) -> Result<&'a [u8], ProtoError> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => Err(ProtoError(format!("expected a length-delimited field, got {other:?}"))),
        }
    }

    pub fn string(self) -> Result<String, ProtoError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// An integer, bool or enum.
    pub fn uint(self) -> Result<u64, ProtoError> {
        match self {
            Value::Varint(v) | Value::Fixed64(v) => Ok(v),
            Value::Fixed32(v) => Ok(u64::from(v)),
            Value::Bytes(_) => Err(ProtoError("expected a number, got a length-delimited field".to_owned())),
        }
    }

    /// An `int64` / `int32` / enum (two's complement in 10 varint bytes when negative).
    pub fn int(self) -> Result<i64, ProtoError> {
        self.uint().map(|v| v as i64)
    }

    pub fn boolean(self) -> Result<bool, ProtoError> {
        self.uint().map(|v| v != 0)
    }
}

/// Reads a `map<string, V>` entry: key (field 1) and the raw value (field 2).
pub fn map_entry(entry: &[u8]) -> Result<(String, &[u8]), ProtoError> {
    let (mut key, mut value) = (String::new(), &[][..]);
    for field in fields(entry) {
        match field? {
            (1, v) => key = v.string()?,
            (2, v) => value = v.bytes()?,
            _ => {}
        }
    }
    Ok((key, value))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal encoder for building test messages.
    #[derive(Default)]
    pub(crate) struct Encoder(pub Vec<u8>);

    impl Encoder {
        fn varint(&mut self, mut v: u64) {
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(byte);
                    return;
                }
                self.0.push(byte | 0x80);
            }
        }

        pub(crate) fn uint(mut self, field: u32, v: u64) -> Self {
            self.varint(u64::from(field) << 3);
            self.varint(v);
            self
        }

        pub(crate) fn int(self, field: u32, v: i64) -> Self {
            self.uint(field, v as u64)
        }

        pub(crate) fn bytes(mut self, field: u32, b: &[u8]) -> Self {
            self.varint((u64::from(field) << 3) | 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }

        pub(crate) fn str(self, field: u32, s: &str) -> Self {
            self.bytes(field, s.as_bytes())
        }

        pub(crate) fn msg(self, field: u32, m: Encoder) -> Self {
            self.bytes(field, &m.0)
        }
    }

    #[test]
    fn reads_varints_strings_and_negative_numbers() {
        let msg = Encoder::default().uint(1, 300).str(2, "serve").int(3, -1).uint(4, 1).0;
        let got: Vec<_> = fields(&msg).map(|f| f.unwrap()).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].1.uint().unwrap(), 300);
        assert_eq!(got[1].1.string().unwrap(), "serve");
        assert_eq!(got[2].1.int().unwrap(), -1);
        assert!(got[3].1.boolean().unwrap());
    }

    #[test]
    fn skips_fixed_width_fields() {
        let mut msg = vec![(5 << 3) | 1];
        msg.extend_from_slice(&7u64.to_le_bytes());
        msg.push((6 << 3) | 5);
        msg.extend_from_slice(&9u32.to_le_bytes());
        let got: Vec<_> = fields(&msg).map(|f| f.unwrap().1.uint().unwrap()).collect();
        assert_eq!(got, vec![7, 9]);
    }

    #[test]
    fn truncated_data_is_an_error_not_a_panic() {
        let msg = Encoder::default().str(2, "hello").0;
        for cut in 1..msg.len() {
            assert!(fields(&msg[..cut]).any(|f| f.is_err()), "cut at {cut}");
        }
        assert!(fields(&[0xff; 11]).next().unwrap().is_err());
    }

    #[test]
    fn map_entries() {
        let entry = Encoder::default().str(1, "serving_default").msg(2, Encoder::default().str(3, "predict")).0;
        let (key, value) = map_entry(&entry).unwrap();
        assert_eq!(key, "serving_default");
        assert_eq!(fields(value).next().unwrap().unwrap().1.string().unwrap(), "predict");
    }
}
