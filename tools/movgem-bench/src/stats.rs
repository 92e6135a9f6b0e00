// SPDX-License-Identifier: GPL-2.0

//! Summaries of measured samples: percentiles and log-log slopes.

use crate::json::Json;

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

/// Count, min, p50, p90, p99, max and mean of latencies, as JSON.
pub fn distribution(samples: &[f64]) -> Json {
    let mean = if samples.is_empty() {
        None
    } else {
        Some(samples.iter().sum::<f64>() / samples.len() as f64)
    };
    Json::obj()
        .with("n", samples.len())
        .with("min", percentile(samples, 0.0))
        .with("p50", percentile(samples, 50.0))
        .with("p90", percentile(samples, 90.0))
        .with("p99", percentile(samples, 99.0))
        .with("max", percentile(samples, 100.0))
        .with("mean", mean)
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
        assert_eq!(d.get("n"), Some(&Json::Int(4)));
        assert_eq!(d.get("p50"), Some(&Json::Num(2.0)));
        assert_eq!(d.get("max"), Some(&Json::Num(4.0)));
        assert_eq!(d.get("mean"), Some(&Json::Num(2.5)));
    }
}
