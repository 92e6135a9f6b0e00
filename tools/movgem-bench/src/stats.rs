// SPDX-License-Identifier: GPL-2.0

//! Summaries of measured samples: percentiles and log-log slopes, and
//! how the results print a measurement.

use serde::{Serialize, Serializer};

/// A measurement as the results print it: three decimals at most (no
/// float noise), a whole number without a fraction, and `null` for NaN
/// and infinities, which JSON lacks.  The host's reader formats integers
/// and fractions differently, so `1.0` must print as `1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if !x.is_finite() {
            return s.serialize_none();
        }
        let r = (x * 1000.0).round() / 1000.0;
        if r == r.trunc() && r.abs() < 1e15 {
            s.serialize_i64(r as i64)
        } else {
            s.serialize_f64(r)
        }
    }
}

/// Fields of `f64` or `Vec<f64>`, or options of them, that serialize as
/// [`Num`]: `#[serde(serialize_with = "stats::num")]`.
pub trait Measured {
    fn serialize_num<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

impl Measured for f64 {
    fn serialize_num<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Num(*self).serialize(s)
    }
}

impl<T: Measured> Measured for Option<T> {
    fn serialize_num<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(v) => v.serialize_num(s),
            None => s.serialize_none(),
        }
    }
}

impl Measured for Vec<f64> {
    fn serialize_num<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|&x| Num(x)))
    }
}

/// See [`Measured`].
pub fn num<T: Measured, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    v.serialize_num(s)
}

/// The `p`-th percentile (0..=100) of `samples` by the nearest-rank
/// method; `None` when there are no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The median of `samples`.
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

/// Count, min, p50, p90, p99, max and mean of latencies.
#[derive(Debug, Serialize)]
pub struct Distribution {
    pub n: usize,
    #[serde(serialize_with = "num")]
    pub min: Option<f64>,
    #[serde(serialize_with = "num")]
    pub p50: Option<f64>,
    #[serde(serialize_with = "num")]
    pub p90: Option<f64>,
    #[serde(serialize_with = "num")]
    pub p99: Option<f64>,
    #[serde(serialize_with = "num")]
    pub max: Option<f64>,
    #[serde(serialize_with = "num")]
    pub mean: Option<f64>,
}

/// The [`Distribution`] of `samples`.
pub fn distribution(samples: &[f64]) -> Distribution {
    let mean = if samples.is_empty() {
        None
    } else {
        Some(samples.iter().sum::<f64>() / samples.len() as f64)
    };
    Distribution {
        n: samples.len(),
        min: percentile(samples, 0.0),
        p50: percentile(samples, 50.0),
        p90: percentile(samples, 90.0),
        p99: percentile(samples, 99.0),
        max: percentile(samples, 100.0),
        mean,
    }
}

/// Least-squares slope of log(y) over log(x): 1 means y grows linearly
/// with x, 2 quadratically.  Points with a non-positive coordinate are
/// ignored; `None` with fewer than two usable points.
pub fn loglog_slope(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn slopes_of_power_laws() {
        let lin: Vec<(f64, f64)> = [1.0, 10.0, 100.0].iter().map(|&x| (x, 3.0 * x)).collect();
        assert!((loglog_slope(&lin).unwrap() - 1.0).abs() < 1e-9);
        let sq: Vec<(f64, f64)> = [1.0, 10.0, 100.0].iter().map(|&x| (x, x * x)).collect();
        assert!((loglog_slope(&sq).unwrap() - 2.0).abs() < 1e-9);
        let flat = [(1.0, 5.0), (1000.0, 5.0)];
        assert!(loglog_slope(&flat).unwrap().abs() < 1e-9);
        assert_eq!(loglog_slope(&[(1.0, 1.0)]), None);
        assert_eq!(loglog_slope(&[(1.0, 1.0), (0.0, 3.0)]), None);
    }

    #[test]
    fn distribution_fields() {
        let d = distribution(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"n":4,"min":1,"p50":2,"p90":4,"p99":4,"max":4,"mean":2.5}"#
        );
        assert_eq!(
            serde_json::to_string(&distribution(&[])).unwrap(),
            r#"{"n":0,"min":null,"p50":null,"p90":null,"p99":null,"max":null,"mean":null}"#
        );
    }

    /// What the hand-written writer this replaced printed.
    #[test]
    fn numbers_print_as_before() {
        let v = vec![
            Num(1.0),
            Num(f64::NAN),
            Num(f64::INFINITY),
            Num(0.12345),
            Num(-2.5),
            Num(0.0004),
            Num(1234567.891_2),
            Num(3.0e-3),
            Num(-0.0),
        ];
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[1,null,null,0.123,-2.5,0,1234567.891,0.003,0]"
        );
        #[derive(Serialize)]
        struct T {
            #[serde(serialize_with = "num")]
            a: f64,
            #[serde(serialize_with = "num")]
            b: Option<f64>,
            #[serde(serialize_with = "num")]
            c: Vec<f64>,
        }
        let t = T {
            a: 2.0,
            b: None,
            c: vec![0.5, 7.0],
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":2,"b":null,"c":[0.5,7]}"#
        );
    }
}
