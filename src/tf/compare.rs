//! Comparing an output with its reference: `|got - ref| <= atol + rtol * |ref|` per element
//! (the rule of `numpy.testing.assert_allclose`), reporting where it is worst.
//!
//! NaN equals NaN (a model that outputs NaN where its Keras original did is faithful), NaN
//! against a number is a mismatch, and an infinity matches only the same infinity. Integer and
//! bool outputs use the same rule on exact integer differences (so the tolerances are
//! harmless there). A different shape fails without comparing elements; a different dtype
//! fails but the elements are still compared, so the report says how far off they are too.

use std::fmt;

use serde::Serialize;

use super::array::{unravel_index, Array, ArrayData, ShapeDisplay};
use super::dtype::DType;

/// The outcome of comparing one output with its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Same shape, same dtype, every element within tolerance.
    pub ok: bool,
    pub expected_dtype: DType,
    pub got_dtype: DType,
    pub expected_shape: Vec<usize>,
    pub got_shape: Vec<usize>,
    pub shape_mismatch: bool,
    pub dtype_mismatch: bool,
    pub atol: f64,
    pub rtol: f64,
    /// Elements compared (0 on a shape mismatch).
    pub elements: usize,
    /// Elements outside their tolerance.
    pub violations: usize,
    /// The element with the largest `|got - ref|` (`None` when nothing was compared).
    pub max: Option<Point>,
    /// The element furthest beyond its tolerance (`None` when every element is within it).
    pub worst: Option<Point>,
}

/// One element of a comparison. `abs_diff` is infinite for NaN against a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub index: Vec<usize>,
    pub expected: f64,
    pub got: f64,
    pub abs_diff: f64,
    pub tolerance: f64,
}

impl Comparison {
    /// The largest `|got - ref|`, 0 when nothing was compared.
    pub fn max_abs_diff(&self) -> f64 {
        self.max.as_ref().map_or(0.0, |p| p.abs_diff)
    }

    /// Where the largest difference is (a multi-index into the output).
    pub fn at_index(&self) -> Option<&[usize]> {
        self.max.as_ref().map(|p| p.index.as_slice())
    }

    /// `atol + rtol * |ref|` at [`Comparison::at_index`].
    pub fn tolerance_at_that_point(&self) -> Option<f64> {
        self.max.as_ref().map(|p| p.tolerance)
    }
}

/// Compares `got` with the reference `expected`.
pub fn compare(expected: &Array, got: &Array, atol: f64, rtol: f64) -> Comparison {
    let shape_mismatch = expected.shape() != got.shape();
    let dtype_mismatch = expected.dtype() != got.dtype();
    let mut comparison = Comparison {
        ok: false,
        expected_dtype: expected.dtype(),
        got_dtype: got.dtype(),
        expected_shape: expected.shape().to_vec(),
        got_shape: got.shape().to_vec(),
        shape_mismatch,
        dtype_mismatch,
        atol,
        rtol,
        elements: 0,
        violations: 0,
        max: None,
        worst: None,
    };
    if shape_mismatch {
        return comparison;
    }
    let mut worst_excess = f64::NEG_INFINITY;
    let mut visit = |i: usize, reference: f64, value: f64, check: Check| {
        comparison.elements += 1;
        let point = || Point {
            index: unravel_index(i, expected.shape()),
            expected: reference,
            got: value,
            abs_diff: check.abs_diff,
            tolerance: check.tolerance,
        };
        if comparison.max.as_ref().is_none_or(|m| check.abs_diff > m.abs_diff) {
            comparison.max = Some(point());
        }
        if !check.ok {
            comparison.violations += 1;
            let excess = check.abs_diff - check.tolerance;
            if excess > worst_excess || comparison.worst.is_none() {
                worst_excess = excess;
                comparison.worst = Some(point());
            }
        }
    };
    match (Elements::of(expected.data()), Elements::of(got.data())) {
        (Elements::Integers(e), Elements::Integers(g)) => {
            for (i, (&r, &v)) in e.iter().zip(&g).enumerate() {
                visit(i, r as f64, v as f64, check_integers(r, v, atol, rtol));
            }
        }
        (e, g) => {
            let (e, g) = (e.into_floats(), g.into_floats());
            for (i, (&r, &v)) in e.iter().zip(&g).enumerate() {
                visit(i, r, v, check_floats(r, v, atol, rtol));
            }
        }
    }
    comparison.ok = !dtype_mismatch && comparison.violations == 0;
    comparison
}

struct Check {
    abs_diff: f64,
    tolerance: f64,
    ok: bool,
}

fn check_floats(reference: f64, got: f64, atol: f64, rtol: f64) -> Check {
    let tolerance = if reference.is_finite() { atol + rtol * reference.abs() } else { atol };
    if reference.is_nan() || got.is_nan() {
        let same = reference.is_nan() && got.is_nan();
        return Check { abs_diff: if same { 0.0 } else { f64::INFINITY }, tolerance, ok: same };
    }
    if reference.is_infinite() || got.is_infinite() {
        let same = reference == got;
        return Check { abs_diff: if same { 0.0 } else { f64::INFINITY }, tolerance, ok: same };
    }
    let abs_diff = (got - reference).abs();
    Check { abs_diff, tolerance, ok: abs_diff <= tolerance }
}

fn check_integers(reference: i128, got: i128, atol: f64, rtol: f64) -> Check {
    let abs_diff = (got - reference).unsigned_abs() as f64;
    let tolerance = atol + rtol * reference.unsigned_abs() as f64;
    Check { abs_diff, tolerance, ok: got == reference || abs_diff <= tolerance }
}

/// The elements as numbers: exact integers when the array is integer or bool.
enum Elements {
    Integers(Vec<i128>),
    Floats(Vec<f64>),
}

impl Elements {
    fn of(data: &ArrayData) -> Elements {
        match data {
            ArrayData::Float32(v) => Elements::Floats(v.iter().map(|&x| x as f64).collect()),
            ArrayData::Float64(v) => Elements::Floats(v.clone()),
            ArrayData::Bool(v) => Elements::Integers(v.iter().map(|&b| b as i128).collect()),
            ArrayData::Int8(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::Int16(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::Int32(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::Int64(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::UInt8(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::UInt16(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::UInt32(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
            ArrayData::UInt64(v) => Elements::Integers(v.iter().map(|&x| x as i128).collect()),
        }
    }

    fn into_floats(self) -> Vec<f64> {
        match self {
            Elements::Floats(v) => v,
            Elements::Integers(v) => v.into_iter().map(|x| x as f64).collect(),
        }
    }
}

/// The comparison in a sentence, for check reports: what failed, where, by how much.
impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shape_mismatch {
            return write!(f, "shape {} expected, got {}", ShapeDisplay(&self.expected_shape), ShapeDisplay(&self.got_shape));
        }
        if self.dtype_mismatch {
            write!(f, "dtype {} expected, got {}; ", self.expected_dtype, self.got_dtype)?;
        }
        match (&self.worst, &self.max) {
            (Some(worst), _) => write!(
                f,
                "{} of {} elements outside tolerance; worst at {:?}: expected {}, got {}, |diff| {} > tolerance {} \
                 (atol {} + rtol {} * |expected|); max |diff| {}",
                self.violations,
                self.elements,
                worst.index,
                worst.expected,
                worst.got,
                Short(worst.abs_diff),
                Short(worst.tolerance),
                self.atol,
                self.rtol,
                Short(self.max_abs_diff()),
            ),
            (None, Some(max)) => write!(
                f,
                "{} elements within tolerance; max |diff| {} at {:?} (tolerance there {})",
                self.elements,
                Short(max.abs_diff),
                max.index,
                Short(max.tolerance)
            ),
            (None, None) => write!(f, "no elements to compare (shape {})", ShapeDisplay(&self.expected_shape)),
        }
    }
}

/// A difference or tolerance with 3 significant digits.
struct Short(f64);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x == 0.0 || !x.is_finite() {
            write!(f, "{x}")
        } else if (1e-3..1e4).contains(&x.abs()) {
            let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
            write!(f, "{x:.decimals$}")
        } else {
            write!(f, "{x:.2e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> Array {
        Array::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn equal_arrays_pass_with_zero_difference() {
        let a = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let c = compare(&a, &a, 1e-5, 1e-5);
        assert!(c.ok);
        assert_eq!(c.max_abs_diff(), 0.0);
        assert_eq!(c.elements, 4);
        assert_eq!(c.worst, None);
    }

    #[test]
    fn tolerance_grows_with_the_reference() {
        // |diff| = 1e-3 at 100.0: tolerance 1e-5 + 1e-5 * 100 = 1.01e-3, inside.
        let expected = Array::vector(vec![100.0f64, 0.0]);
        let got = Array::vector(vec![100.001f64, 0.0]);
        let c = compare(&expected, &got, 1e-5, 1e-5);
        assert!(c.ok, "{c}");
        assert_eq!(c.at_index(), Some(&[0][..]));
        assert!((c.tolerance_at_that_point().unwrap() - 1.01e-3).abs() < 1e-12);
        // the same difference at 0.0 is outside.
        let c = compare(&Array::vector(vec![0.0f64]), &Array::vector(vec![0.001f64]), 1e-5, 1e-5);
        assert!(!c.ok);
        assert_eq!(c.violations, 1);
    }

    #[test]
    fn the_worst_element_is_the_one_most_beyond_its_tolerance() {
        // index 0 has the largest difference but a large reference; index 2 is the violation.
        let expected = f64_matrix(&[1000.0, 1.0, 0.0, 2.0]);
        let got = f64_matrix(&[1000.5, 1.0, 0.1, 2.0]);
        let c = compare(&expected, &got, 1e-3, 1e-3);
        assert!(!c.ok);
        assert_eq!(c.violations, 1);
        assert_eq!(c.at_index(), Some(&[0, 0][..]));
        let worst = c.worst.as_ref().unwrap();
        assert_eq!(worst.index, vec![1, 0]);
        assert!((worst.abs_diff - 0.1).abs() < 1e-12);
        assert_eq!(
            c.to_string(),
            "1 of 4 elements outside tolerance; worst at [1, 0]: expected 0, got 0.1, |diff| 0.100 > tolerance 0.00100 \
             (atol 0.001 + rtol 0.001 * |expected|); max |diff| 0.500"
        );
    }

    fn f64_matrix(v: &[f64]) -> Array {
        Array::new(vec![2, 2], v.to_vec()).unwrap()
    }

    #[test]
    fn nan_matches_nan_only() {
        let expected = Array::vector(vec![f32::NAN, 1.0, f32::NAN]);
        let same = compare(&expected, &Array::vector(vec![f32::NAN, 1.0, f32::NAN]), 0.0, 0.0);
        assert!(same.ok, "{same}");
        let c = compare(&expected, &Array::vector(vec![f32::NAN, f32::NAN, 0.0]), 1.0, 1.0);
        assert!(!c.ok);
        assert_eq!(c.violations, 2);
        assert_eq!(c.max_abs_diff(), f64::INFINITY);
        assert_eq!(c.worst.as_ref().unwrap().index, vec![1], "the first of equally bad elements");
    }

    #[test]
    fn infinities_match_the_same_infinity_only() {
        let expected = Array::vector(vec![f64::INFINITY, f64::NEG_INFINITY]);
        assert!(compare(&expected, &expected, 0.0, 0.0).ok);
        let c = compare(&expected, &Array::vector(vec![f64::INFINITY, 1e308]), 1e9, 1e9);
        assert!(!c.ok);
        assert_eq!(c.worst.as_ref().unwrap().index, vec![1]);
    }

    #[test]
    fn shape_mismatch_fails_without_element_comparison() {
        let c = compare(&f32s(&[2, 3], &[0.0; 6]), &f32s(&[3, 2], &[0.0; 6]), 1.0, 1.0);
        assert!(!c.ok && c.shape_mismatch);
        assert_eq!(c.elements, 0);
        assert_eq!(c.to_string(), "shape [2, 3] expected, got [3, 2]");
        let scalar = compare(&Array::new(vec![], vec![1.0f32]).unwrap(), &Array::vector(vec![1.0f32]), 1.0, 1.0);
        assert!(scalar.shape_mismatch, "[] and [1] differ");
    }

    #[test]
    fn dtype_mismatch_fails_but_still_measures() {
        let c = compare(&Array::vector(vec![1.0f32, 2.0]), &Array::vector(vec![1.0f64, 2.5]), 0.0, 0.0);
        assert!(!c.ok && c.dtype_mismatch);
        assert_eq!(c.max_abs_diff(), 0.5);
        assert!(c.to_string().starts_with("dtype float32 expected, got float64; 1 of 2"), "{c}");
    }

    #[test]
    fn integers_compare_exactly_even_beyond_f64_precision() {
        let big = Array::vector(vec![i64::MAX, 5]);
        let off_by_one = Array::vector(vec![i64::MAX - 1, 5]);
        let c = compare(&big, &off_by_one, 0.0, 0.0);
        assert!(!c.ok);
        assert_eq!(c.max_abs_diff(), 1.0);
        assert!(compare(&Array::vector(vec![u64::MAX]), &Array::vector(vec![u64::MAX]), 0.0, 0.0).ok);
        let bools = compare(&Array::vector(vec![true, false]), &Array::vector(vec![true, true]), 0.0, 0.0);
        assert_eq!((bools.ok, bools.violations), (false, 1));
    }

    #[test]
    fn empty_outputs_pass() {
        let empty = f32s(&[0, 3], &[]);
        let c = compare(&empty, &empty, 0.0, 0.0);
        assert!(c.ok);
        assert_eq!(c.to_string(), "no elements to compare (shape [0, 3])");
    }
}
