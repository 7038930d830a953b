//! NumPy's `.npy` format, the subset `np.save` writes for plain numeric arrays.
//!
//! The Python worker writes golden inputs and reference outputs with
//! `np.save(path, array, allow_pickle=False)`; the native check reads them here. A file is
//! `\x93NUMPY`, a version (1.0: u16 header length; 2.0 and 3.0: u32), a header that is a
//! Python dict literal (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`,
//! space-padded to a multiple of 64 bytes), then the raw elements. Read: any byte order,
//! C or Fortran order, the element types [`ArrayData`] holds. Written: version 1.0 (2.0 only
//! for a header over 64 KiB), little-endian, C order — what `np.load` expects.
//! Strings, objects (pickles) and structured dtypes are refused with a clear message.

use std::path::{Path, PathBuf};

use super::array::{element_count, with_vec, Array, ArrayData};
use super::dtype::DType;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads an `.npy` file.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError::at(path, NpyErrorKind::Read(e)))?;
    parse(&bytes).map_err(|kind| NpyError::at(path, kind))
}

/// Writes `array` as an `.npy` file.
pub fn write(path: &Path, array: &Array) -> Result<(), NpyError> {
    std::fs::write(path, to_bytes(array)).map_err(|e| NpyError::at(path, NpyErrorKind::Write(e)))
}

/// Parses the bytes of an `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, NpyErrorKind> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyErrorKind::NotNpy);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(NpyErrorKind::UnsupportedVersion(major, minor)),
    };
    let header_end = header_start.checked_add(header_len).filter(|&end| end <= bytes.len()).ok_or(NpyErrorKind::Truncated)?;
    let header =
        std::str::from_utf8(&bytes[header_start..header_end]).map_err(|_| NpyErrorKind::BadHeader("the header is not text".to_owned()))?;
    let header = Header::parse(header)?;
    let (dtype, order) = parse_descr(&header.descr)?;
    let n = element_count(&header.shape).ok_or_else(|| NpyErrorKind::BadHeader("the shape is too large".to_owned()))?;
    let body = &bytes[header_end..];
    let size = dtype.size().expect("supported dtypes have a size") as usize;
    let expected = n.checked_mul(size).ok_or(NpyErrorKind::Truncated)?;
    if body.len() != expected {
        return Err(NpyErrorKind::DataSize { expected, got: body.len() });
    }
    let mut data = decode(dtype, order, body);
    if header.fortran_order && header.shape.len() > 1 {
        data = fortran_to_c(data, &header.shape);
    }
    Ok(Array::new(header.shape, data).expect("element count checked above"))
}

/// The bytes of an `.npy` file holding `array` (version 1.0, little-endian, C order).
pub fn to_bytes(array: &Array) -> Vec<u8> {
    let mut shape = array.shape().iter().map(|d| format!("{d}, ")).collect::<String>();
    if array.shape().len() > 1 {
        shape.truncate(shape.len() - 2);
    } else if array.shape().len() == 1 {
        shape.truncate(shape.len() - 1);
    }
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': ({shape}), }}", descr(array.dtype()));
    let (version, prefix) = if header.len() + 11 <= u16::MAX as usize { (1u8, 10) } else { (2u8, 12) };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.extend(std::iter::repeat_n(' ', total - prefix - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + array.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    macro_rules! le {
        ($v:expr) => {
            out.extend($v.iter().flat_map(|x| x.to_le_bytes()))
        };
    }
    match array.data() {
        ArrayData::Float32(v) => le!(v),
        ArrayData::Float64(v) => le!(v),
        ArrayData::Int8(v) => le!(v),
        ArrayData::Int16(v) => le!(v),
        ArrayData::Int32(v) => le!(v),
        ArrayData::Int64(v) => le!(v),
        ArrayData::UInt8(v) => le!(v),
        ArrayData::UInt16(v) => le!(v),
        ArrayData::UInt32(v) => le!(v),
        ArrayData::UInt64(v) => le!(v),
        ArrayData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
    }
    out
}

fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::Float32 => "<f4",
        DType::Float64 => "<f8",
        DType::Int8 => "|i1",
        DType::Int16 => "<i2",
        DType::Int32 => "<i4",
        DType::Int64 => "<i8",
        DType::UInt8 => "|u1",
        DType::UInt16 => "<u2",
        DType::UInt32 => "<u4",
        DType::UInt64 => "<u8",
        DType::Bool => "|b1",
        other => unreachable!("an Array never holds {other}"),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ByteOrder {
    Little,
    Big,
}

fn parse_descr(descr: &str) -> Result<(DType, ByteOrder), NpyErrorKind> {
    let unsupported = || NpyErrorKind::UnsupportedDtype(descr.to_owned());
    let mut chars = descr.chars();
    let order = match chars.next() {
        Some('<') => ByteOrder::Little,
        Some('>') => ByteOrder::Big,
        Some('|') | Some('=') if cfg!(target_endian = "little") => ByteOrder::Little,
        Some('|') | Some('=') => ByteOrder::Big,
        _ => return Err(unsupported()),
    };
    let dtype = match chars.as_str() {
        "f4" => DType::Float32,
        "f8" => DType::Float64,
        "i1" => DType::Int8,
        "i2" => DType::Int16,
        "i4" => DType::Int32,
        "i8" => DType::Int64,
        "u1" => DType::UInt8,
        "u2" => DType::UInt16,
        "u4" => DType::UInt32,
        "u8" => DType::UInt64,
        "b1" => DType::Bool,
        _ => return Err(unsupported()),
    };
    Ok((dtype, order))
}

fn decode(dtype: DType, order: ByteOrder, body: &[u8]) -> ArrayData {
    macro_rules! numbers {
        ($t:ty) => {{
            const N: usize = std::mem::size_of::<$t>();
            body.chunks_exact(N)
                .map(|c| {
                    let bytes: [u8; N] = c.try_into().expect("chunk of N bytes");
                    match order {
                        ByteOrder::Little => <$t>::from_le_bytes(bytes),
                        ByteOrder::Big => <$t>::from_be_bytes(bytes),
                    }
                })
                .collect::<Vec<$t>>()
                .into()
        }};
    }
    match dtype {
        DType::Float32 => numbers!(f32),
        DType::Float64 => numbers!(f64),
        DType::Int8 => numbers!(i8),
        DType::Int16 => numbers!(i16),
        DType::Int32 => numbers!(i32),
        DType::Int64 => numbers!(i64),
        DType::UInt8 => numbers!(u8),
        DType::UInt16 => numbers!(u16),
        DType::UInt32 => numbers!(u32),
        DType::UInt64 => numbers!(u64),
        DType::Bool => body.iter().map(|&b| b != 0).collect::<Vec<bool>>().into(),
        other => unreachable!("parse_descr never yields {other}"),
    }
}

/// Reorders column-major elements into row-major ones.
fn fortran_to_c(data: ArrayData, shape: &[usize]) -> ArrayData {
    let n = data.len();
    // Position in the Fortran-ordered buffer of each element, taken in C order.
    let mut sources = Vec::with_capacity(n);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        let mut flat = 0;
        let mut stride = 1;
        for (i, &d) in index.iter().zip(shape) {
            flat += i * stride;
            stride *= d;
        }
        sources.push(flat);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    with_vec!(data, v => sources.iter().map(|&s| v[s]).collect::<Vec<_>>().into())
}

/// The header dict: `descr`, `fortran_order`, `shape`.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    fn parse(text: &str) -> Result<Header, NpyErrorKind> {
        let mut p = Literal { s: text.trim_end().as_bytes(), pos: 0 };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            p.skip_space();
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.skip_space();
            p.expect(b':')?;
            p.skip_space();
            match key.as_str() {
                "descr" if p.peek() == Some(b'[') => {
                    return Err(NpyErrorKind::UnsupportedDtype("a structured dtype".to_owned()));
                }
                "descr" => descr = Some(p.string()?),
                "fortran_order" => fortran_order = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                other => return Err(NpyErrorKind::BadHeader(format!("unknown key '{other}'"))),
            }
            p.skip_space();
            if !p.eat(b',') {
                p.skip_space();
                p.expect(b'}')?;
                break;
            }
        }
        let missing = |key: &str| NpyErrorKind::BadHeader(format!("no '{key}'"));
        Ok(Header {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

/// Just enough of a Python literal reader for the header.
struct Literal<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyErrorKind> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(NpyErrorKind::BadHeader(format!("expected '{}' at byte {}", c as char, self.pos)))
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<String, NpyErrorKind> {
        let quote = self
            .peek()
            .filter(|&q| q == b'\'' || q == b'"')
            .ok_or_else(|| NpyErrorKind::BadHeader(format!("expected a string at byte {}", self.pos)))?;
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c != quote) {
            self.pos += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.expect(quote)?;
        Ok(text)
    }

    fn boolean(&mut self) -> Result<bool, NpyErrorKind> {
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(NpyErrorKind::BadHeader(format!("expected True or False at byte {}", self.pos)))
    }

    /// `()`, `(3,)`, `(2, 3)`; Python 2's `3L` is accepted.
    fn tuple(&mut self) -> Result<Vec<usize>, NpyErrorKind> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_space();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
            let dim = digits.parse().map_err(|_| NpyErrorKind::BadHeader(format!("expected a dimension at byte {start}")))?;
            dims.push(dim);
            self.eat(b'L');
            self.skip_space();
            if !self.eat(b',') {
                self.skip_space();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// A `.npy` file that could not be read or is not one the native check can use.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{}: {kind}", .path.display())]
pub struct NpyError {
    pub path: PathBuf,
    #[source]
    pub kind: NpyErrorKind,
}

impl NpyError {
    fn at(path: &Path, kind: NpyErrorKind) -> NpyError {
        NpyError { path: path.to_owned(), kind }
    }
}

/// What is wrong with the file [`NpyError`] names.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NpyErrorKind {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("cannot write it: {0}")]
    Write(#[source] std::io::Error),
    #[error("not a .npy file (no \\x93NUMPY magic)")]
    NotNpy,
    #[error("unsupported .npy version {0}.{1}")]
    UnsupportedVersion(u8, u8),
    #[error("the file is truncated")]
    Truncated,
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    #[error("arrays of dtype '{0}' are not supported (numeric and bool arrays are; strings, objects and structured arrays are not)")]
    UnsupportedDtype(String),
    #[error("the header announces {expected} bytes of data, the file holds {got}")]
    DataSize { expected: usize, got: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(array: Array) {
        let bytes = to_bytes(&array);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "data starts 64-byte aligned, as np.save does");
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert_eq!(parse(&bytes).unwrap(), array);
    }

    #[test]
    fn every_supported_dtype_round_trips() {
        round_trip(Array::new(vec![2, 3], vec![1.5f32, -2.0, 0.0, f32::MAX, f32::MIN_POSITIVE, 7.25]).unwrap());
        round_trip(Array::vector(vec![0.1f64, -1e300]));
        round_trip(Array::vector(vec![i8::MIN, 0, i8::MAX]));
        round_trip(Array::vector(vec![i16::MIN, i16::MAX]));
        round_trip(Array::new(vec![1, 1, 2], vec![i32::MIN, i32::MAX]).unwrap());
        round_trip(Array::vector(vec![i64::MIN, -1, i64::MAX]));
        round_trip(Array::new(vec![2, 2], vec![0u8, 1, 254, 255]).unwrap());
        round_trip(Array::vector(vec![u16::MAX]));
        round_trip(Array::vector(vec![u32::MAX, 0]));
        round_trip(Array::vector(vec![u64::MAX]));
        round_trip(Array::new(vec![3], vec![true, false, true]).unwrap());
        round_trip(Array::new(vec![], vec![3.0f64]).unwrap());
        round_trip(Array::new(vec![0, 5], Vec::<f32>::new()).unwrap());
    }

    #[test]
    fn nan_survives_bit_for_bit() {
        let bytes = to_bytes(&Array::vector(vec![f32::NAN, f32::INFINITY]));
        let ArrayData::Float32(v) = parse(&bytes).unwrap().into_data() else { panic!() };
        assert!(v[0].is_nan());
        assert_eq!(v[1], f32::INFINITY);
    }

    /// Exactly what `np.save('x.npy', np.arange(6, dtype='<i4').reshape(2, 3))` writes.
    #[test]
    fn reads_numpy_output() {
        let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        let mut header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }".to_owned();
        header.push_str(&" ".repeat(117 - header.len()));
        header.push('\n');
        bytes.extend_from_slice(header.as_bytes());
        for i in 0..6i32 {
            bytes.extend_from_slice(&i.to_le_bytes());
        }
        assert_eq!(parse(&bytes).unwrap(), Array::new(vec![2, 3], vec![0, 1, 2, 3, 4, 5]).unwrap());
        assert_eq!(to_bytes(&parse(&bytes).unwrap()), bytes, "and writes the same bytes back");
    }

    fn npy_with(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_version_2_big_endian_and_fortran_order() {
        let body: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let bytes = npy_with(2, "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }\n", &body);
        assert_eq!(parse(&bytes).unwrap(), Array::vector(vec![1.0f64, 2.0]));

        // np.asfortranarray([[1, 2, 3], [4, 5, 6]]) is stored column by column: 1 4 2 5 3 6.
        let body: Vec<u8> = [1i64, 4, 2, 5, 3, 6].iter().flat_map(|x| x.to_le_bytes()).collect();
        let bytes = npy_with(1, "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }\n", &body);
        assert_eq!(parse(&bytes).unwrap(), Array::new(vec![2, 3], vec![1i64, 2, 3, 4, 5, 6]).unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_hold() {
        let strings = npy_with(1, "{'descr': '<U5', 'fortran_order': False, 'shape': (1,), }\n", &[0; 20]);
        assert!(matches!(parse(&strings).unwrap_err(), NpyErrorKind::UnsupportedDtype(d) if d == "<U5"));
        let objects = npy_with(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n", &[0; 8]);
        assert!(parse(&objects).unwrap_err().to_string().contains("not supported"));
        let short = npy_with(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", &[0; 8]);
        assert!(matches!(parse(&short).unwrap_err(), NpyErrorKind::DataSize { expected: 12, got: 8 }));
        assert!(matches!(parse(b"PK\x03\x04 a zip, maybe an npz").unwrap_err(), NpyErrorKind::NotNpy));
        let bad = npy_with(1, "{'descr': '<f4', 'shape': (1,), }\n", &[0; 4]);
        assert!(matches!(parse(&bad).unwrap_err(), NpyErrorKind::BadHeader(why) if why == "no 'fortran_order'"));
    }

    #[test]
    fn file_errors_name_the_file() {
        let err = read(Path::new("/nonexistent/golden/x.npy")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/golden/x.npy: cannot read it"), "{err}");
    }
}
