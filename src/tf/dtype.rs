//! TensorFlow's element types, by the numbers `types.proto` gives them.

use std::fmt;

/// A TensorFlow data type (`tensorflow.DataType`). Named like NumPy / `tf.dtypes` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DType {
    Float32,
    Float64,
    Int32,
    UInt8,
    Int16,
    Int8,
    String,
    Complex64,
    Int64,
    Bool,
    QInt8,
    QUInt8,
    QInt32,
    BFloat16,
    QInt16,
    QUInt16,
    UInt16,
    Complex128,
    Float16,
    Resource,
    Variant,
    UInt32,
    UInt64,
    /// A value this table does not know (newer float8/int4 types, reference types).
    Other(i32),
}

const TABLE: &[(DType, i32, &str)] = &[
    (DType::Float32, 1, "float32"),
    (DType::Float64, 2, "float64"),
    (DType::Int32, 3, "int32"),
    (DType::UInt8, 4, "uint8"),
    (DType::Int16, 5, "int16"),
    (DType::Int8, 6, "int8"),
    (DType::String, 7, "string"),
    (DType::Complex64, 8, "complex64"),
    (DType::Int64, 9, "int64"),
    (DType::Bool, 10, "bool"),
    (DType::QInt8, 11, "qint8"),
    (DType::QUInt8, 12, "quint8"),
    (DType::QInt32, 13, "qint32"),
    (DType::BFloat16, 14, "bfloat16"),
    (DType::QInt16, 15, "qint16"),
    (DType::QUInt16, 16, "quint16"),
    (DType::UInt16, 17, "uint16"),
    (DType::Complex128, 18, "complex128"),
    (DType::Float16, 19, "float16"),
    (DType::Resource, 20, "resource"),
    (DType::Variant, 21, "variant"),
    (DType::UInt32, 22, "uint32"),
    (DType::UInt64, 23, "uint64"),
];

impl DType {
    /// From the `DataType` enum value of a proto. Reference types (`DT_FLOAT_REF` = 101 …,
    /// seen in TF1 graphs) map to their value type.
    pub fn from_proto(value: i32) -> DType {
        let value = if value > 100 { value - 100 } else { value };
        TABLE.iter().find(|(_, v, _)| *v == value).map_or(DType::Other(value), |(d, _, _)| *d)
    }

    pub fn to_proto(self) -> i32 {
        match self {
            DType::Other(v) => v,
            _ => TABLE.iter().find(|(d, _, _)| *d == self).map_or(0, |(_, v, _)| *v),
        }
    }

    /// `float32`, `int64`, … (`unknown(24)` for types this table lacks).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match TABLE.iter().find(|(d, _, _)| *d == self) {
            Some((_, _, name)) => (*name).into(),
            None => format!("unknown({})", self.to_proto()).into(),
        }
    }

    /// By name, as [`DType::name`] writes it (also `float`, `double`, `half`).
    pub fn from_name(name: &str) -> Option<DType> {
        let name = match name {
            "float" => "float32",
            "double" => "float64",
            "half" => "float16",
            other => other,
        };
        TABLE.iter().find(|(_, _, n)| *n == name).map(|(d, _, _)| *d)
    }

    /// Bytes per element; `None` for variable-size types (string, resource, variant, unknown).
    pub fn size(self) -> Option<u64> {
        Some(match self {
            DType::Bool | DType::Int8 | DType::UInt8 | DType::QInt8 | DType::QUInt8 => 1,
            DType::Int16 | DType::UInt16 | DType::QInt16 | DType::QUInt16 | DType::Float16 | DType::BFloat16 => 2,
            DType::Float32 | DType::Int32 | DType::UInt32 | DType::QInt32 => 4,
            DType::Float64 | DType::Int64 | DType::UInt64 | DType::Complex64 => 8,
            DType::Complex128 => 16,
            DType::String | DType::Resource | DType::Variant | DType::Other(_) => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl serde::Serialize for DType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_numbers_round_trip() {
        for (dtype, value, name) in TABLE {
            assert_eq!(DType::from_proto(*value), *dtype);
            assert_eq!(dtype.to_proto(), *value);
            assert_eq!(DType::from_name(name), Some(*dtype));
        }
        assert_eq!(DType::from_proto(101), DType::Float32, "DT_FLOAT_REF");
        assert_eq!(DType::from_proto(24).name(), "unknown(24)");
    }
}
