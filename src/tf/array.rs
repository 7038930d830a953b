//! A small owned n-dimensional array: what goes into and comes out of a signature, and what
//! `.npy` files hold. Row-major (C order), like NumPy's default and TensorFlow's tensors.

use std::fmt;

use super::dtype::DType;

/// An n-d array: a shape and that many elements of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    shape: Vec<usize>,
    data: ArrayData,
}

/// The elements of an [`Array`], in C order. The types the native check feeds and fetches.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    UInt8(Vec<u8>),
    UInt16(Vec<u16>),
    UInt32(Vec<u32>),
    UInt64(Vec<u64>),
    Bool(Vec<bool>),
}

/// Applies `$body` to the vector inside any [`ArrayData`] variant.
macro_rules! with_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            ArrayData::Float32($v) => $body,
            ArrayData::Float64($v) => $body,
            ArrayData::Int8($v) => $body,
            ArrayData::Int16($v) => $body,
            ArrayData::Int32($v) => $body,
            ArrayData::Int64($v) => $body,
            ArrayData::UInt8($v) => $body,
            ArrayData::UInt16($v) => $body,
            ArrayData::UInt32($v) => $body,
            ArrayData::UInt64($v) => $body,
            ArrayData::Bool($v) => $body,
        }
    };
}
pub(crate) use with_vec;

macro_rules! from_vec {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<Vec<$t>> for ArrayData {
            fn from(v: Vec<$t>) -> ArrayData {
                ArrayData::$variant(v)
            }
        })*
    };
}
from_vec!(f32 => Float32, f64 => Float64, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64,
          u8 => UInt8, u16 => UInt16, u32 => UInt32, u64 => UInt64, bool => Bool);

impl ArrayData {
    pub fn len(&self) -> usize {
        with_vec!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            ArrayData::Float32(_) => DType::Float32,
            ArrayData::Float64(_) => DType::Float64,
            ArrayData::Int8(_) => DType::Int8,
            ArrayData::Int16(_) => DType::Int16,
            ArrayData::Int32(_) => DType::Int32,
            ArrayData::Int64(_) => DType::Int64,
            ArrayData::UInt8(_) => DType::UInt8,
            ArrayData::UInt16(_) => DType::UInt16,
            ArrayData::UInt32(_) => DType::UInt32,
            ArrayData::UInt64(_) => DType::UInt64,
            ArrayData::Bool(_) => DType::Bool,
        }
    }

    /// Whether arrays of `dtype` can be held (and so fed to / fetched from TensorFlow).
    pub fn supports(dtype: DType) -> bool {
        ArrayData::zeros(dtype, 0).is_some()
    }

    /// `n` zero elements of `dtype`, if the type is supported.
    pub fn zeros(dtype: DType, n: usize) -> Option<ArrayData> {
        Some(match dtype {
            DType::Float32 => vec![0f32; n].into(),
            DType::Float64 => vec![0f64; n].into(),
            DType::Int8 => vec![0i8; n].into(),
            DType::Int16 => vec![0i16; n].into(),
            DType::Int32 => vec![0i32; n].into(),
            DType::Int64 => vec![0i64; n].into(),
            DType::UInt8 => vec![0u8; n].into(),
            DType::UInt16 => vec![0u16; n].into(),
            DType::UInt32 => vec![0u32; n].into(),
            DType::UInt64 => vec![0u64; n].into(),
            DType::Bool => vec![false; n].into(),
            _ => return None,
        })
    }
}

impl Array {
    /// An array of `shape` holding `data`; the element count must be the shape's product
    /// (1 for the scalar shape `[]`).
    pub fn new(shape: Vec<usize>, data: impl Into<ArrayData>) -> Result<Array, ShapeError> {
        let data = data.into();
        let expected = element_count(&shape);
        if expected != Some(data.len()) {
            return Err(ShapeError { shape, elements: data.len() });
        }
        Ok(Array { shape, data })
    }

    /// A one-dimensional array.
    pub fn vector(data: impl Into<ArrayData>) -> Array {
        let data = data.into();
        Array { shape: vec![data.len()], data }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &ArrayData {
        &self.data
    }

    pub fn into_data(self) -> ArrayData {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// `float32[2, 3]`
impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype(), ShapeDisplay(&self.shape))
    }
}

/// Shows a shape as `[2, 3]` (`[]` for a scalar).
pub struct ShapeDisplay<'a>(pub &'a [usize]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The product of `shape`, or `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The multi-index of the `flat`-th element of a C-order array of `shape`.
pub fn unravel_index(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            index[i] = flat % d;
            flat /= d;
        }
    }
    index
}

/// An element count that does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("shape {} {}", ShapeDisplay(.shape), self.mismatch())]
pub struct ShapeError {
    pub shape: Vec<usize>,
    pub elements: usize,
}

impl ShapeError {
    fn mismatch(&self) -> String {
        match element_count(&self.shape) {
            Some(n) => format!("needs {n} elements, got {}", self.elements),
            None => "is too large".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_must_match_the_data() {
        assert!(Array::new(vec![2, 3], vec![0f32; 6]).is_ok());
        assert!(Array::new(vec![], vec![1i64]).is_ok(), "a scalar holds one element");
        assert!(Array::new(vec![0, 4], Vec::<bool>::new()).is_ok());
        let err = Array::new(vec![2, 2], vec![1u8; 3]).unwrap_err();
        assert_eq!(err.to_string(), "shape [2, 2] needs 4 elements, got 3");
    }

    #[test]
    fn unravel_is_c_order() {
        assert_eq!(unravel_index(0, &[2, 3]), vec![0, 0]);
        assert_eq!(unravel_index(4, &[2, 3]), vec![1, 1]);
        assert_eq!(unravel_index(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(unravel_index(0, &[]), Vec::<usize>::new());
    }

    #[test]
    fn displays_dtype_and_shape() {
        assert_eq!(Array::new(vec![2, 1], vec![1.0f64, 2.0]).unwrap().to_string(), "float64[2, 1]");
        assert_eq!(Array::new(vec![], vec![true]).unwrap().to_string(), "bool[]");
    }
}
