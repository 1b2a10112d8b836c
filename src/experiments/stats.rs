//! Experiment results from counts: per arm the conversion rate with a 95%
//! Wilson interval, the difference to control with a two-sided pooled
//! two-proportion z-test, a Bayesian chance-to-beat-control, and a
//! sample-ratio-mismatch (SRM) check of the exposures against the flag's
//! split.
//!
//! Everything is a pure function of the counts (no sampling, no
//! randomness), so results are reproducible from the stored events.
//! Degenerate inputs (no exposures, 0% or 100% conversion, a lone arm, no
//! control) give `None` fields or defined values, never NaN or a panic.

use serde::Serialize;
use statrs::distribution::{Beta, ChiSquared, Continuous, ContinuousCDF, Normal};

use super::error::ExperimentError;

/// Two-sided 95%: the normal quantile at 0.975.
fn z_95() -> f64 {
    Normal::standard().inverse_cdf(0.975)
}

/// Below this SRM p-value the split is flagged as broken.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Exposures and conversions of one arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmCounts {
    /// The flag variant.
    pub arm: String,
    pub exposures: u64,
    pub conversions: u64,
}

impl ArmCounts {
    pub fn new(arm: &str, exposures: u64, conversions: u64) -> ArmCounts {
        ArmCounts {
            arm: arm.to_string(),
            exposures,
            conversions,
        }
    }
}

/// A closed interval of rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// An arm against control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// `rate - control rate`.
    pub absolute: f64,
    /// `(rate - control rate) / control rate`; `None` when control's rate is 0.
    pub relative: Option<f64>,
    /// Two-sided p-value of the pooled two-proportion z-test (1 when both
    /// arms convert at 0% or both at 100%: no evidence of a difference).
    pub p_value: f64,
    /// P(p_arm > p_control) under Beta(1 + c, 1 + n - c) posteriors.
    pub chance_to_beat_control: f64,
}

/// One arm's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmResult {
    pub arm: String,
    pub is_control: bool,
    pub exposures: u64,
    pub conversions: u64,
    /// `conversions / exposures`; `None` without exposures.
    pub rate: Option<f64>,
    /// 95% Wilson score interval; `None` without exposures.
    pub interval: Option<Interval>,
    /// `None` for control itself, or when this arm or control has no
    /// exposures (or there is no control).
    pub vs_control: Option<Comparison>,
}

/// Sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRatio {
    /// Pearson's chi-square over the arms with a positive weight.
    pub chi_square: f64,
    pub degrees_of_freedom: u32,
    pub p_value: f64,
    /// Expected exposures per arm with a positive weight, in result order.
    pub expected: Vec<(String, f64)>,
    /// Arms with exposures but no (or zero) weight: traffic the split
    /// cannot have produced.
    pub unexpected_arms: Vec<String>,
    /// `p_value < SRM_THRESHOLD`, or exposures in an unexpected arm. When
    /// true, the assignment is broken and the other numbers are not to be
    /// trusted.
    pub mismatch: bool,
}

/// Everything [`analyze`] computes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results {
    pub control: String,
    /// Whether control appears in the counts or the weights.
    pub control_found: bool,
    pub arms: Vec<ArmResult>,
    /// `None` without weights, without exposures, or with fewer than two
    /// weighted arms.
    pub sample_ratio: Option<SampleRatio>,
}

/// Results for an experiment. `counts` has one row per arm (an arm
/// missing there but present in `weights` counts as zero exposures);
/// `weights` is the flag's split ([`super::arm_weights`]), needed only for
/// the SRM check. Arms come out in `counts` order, then weight-only arms.
pub fn analyze(
    control: &str,
    counts: &[ArmCounts],
    weights: Option<&[(String, f64)]>,
) -> Result<Results, ExperimentError> {
    let mut rows: Vec<ArmCounts> = Vec::with_capacity(counts.len());
    for c in counts {
        if c.conversions > c.exposures {
            return Err(ExperimentError::ConversionsExceedExposures {
                arm: c.arm.clone(),
                exposures: c.exposures,
                conversions: c.conversions,
            });
        }
        if rows.iter().any(|r| r.arm == c.arm) {
            return Err(ExperimentError::ArmDuplicate { arm: c.arm.clone() });
        }
        rows.push(c.clone());
    }
    for (arm, _) in weights.unwrap_or(&[]) {
        if !rows.iter().any(|r| &r.arm == arm) {
            rows.push(ArmCounts::new(arm, 0, 0));
        }
    }
    let control_row = rows.iter().find(|r| r.arm == control).cloned();
    let arms = rows
        .iter()
        .map(|r| {
            let is_control = r.arm == control;
            let vs_control = match &control_row {
                Some(ctl) if !is_control => compare(r, ctl),
                _ => None,
            };
            ArmResult {
                arm: r.arm.clone(),
                is_control,
                exposures: r.exposures,
                conversions: r.conversions,
                rate: rate(r.conversions, r.exposures),
                interval: wilson_interval(r.conversions, r.exposures),
                vs_control,
            }
        })
        .collect();
    let sample_ratio = weights.and_then(|w| {
        let observed: Vec<(String, u64)> =
            rows.iter().map(|r| (r.arm.clone(), r.exposures)).collect();
        sample_ratio_check(&observed, w)
    });
    Ok(Results {
        control: control.to_string(),
        control_found: control_row.is_some(),
        arms,
        sample_ratio,
    })
}

fn rate(conversions: u64, exposures: u64) -> Option<f64> {
    (exposures > 0).then(|| conversions as f64 / exposures as f64)
}

fn compare(arm: &ArmCounts, control: &ArmCounts) -> Option<Comparison> {
    let p = rate(arm.conversions, arm.exposures)?;
    let q = rate(control.conversions, control.exposures)?;
    Some(Comparison {
        absolute: p - q,
        relative: (q > 0.0).then(|| (p - q) / q),
        p_value: two_proportion_p_value(
            arm.conversions,
            arm.exposures,
            control.conversions,
            control.exposures,
        )?,
        chance_to_beat_control: chance_to_beat(
            arm.conversions,
            arm.exposures,
            control.conversions,
            control.exposures,
        )?,
    })
}

/// 95% Wilson score interval for `c` successes in `n` trials; `None` when
/// `n == 0` or `c > n`.
pub fn wilson_interval(c: u64, n: u64) -> Option<Interval> {
    if n == 0 || c > n {
        return None;
    }
    let z = z_95();
    let n = n as f64;
    let p = c as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // The bounds hold the rate exactly; in floating point `center - half`
    // can land a rounding error above a rate of 0 (0 of 2 gave 5.6e-17),
    // or `center + half` below a rate of 1.
    Some(Interval {
        low: (center - half).clamp(0.0, p),
        high: (center + half).clamp(p, 1.0),
    })
}

/// Two-sided p-value of the pooled two-proportion z-test of `c1/n1`
/// against `c2/n2`; `None` when either `n` is 0 or a count exceeds its `n`.
pub fn two_proportion_p_value(c1: u64, n1: u64, c2: u64, n2: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 || c1 > n1 || c2 > n2 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (c1 + c2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        // Both arms at 0% (or both at 100%): identical, nothing to test.
        return Some(1.0);
    }
    let z = (c1 as f64 / n1f - c2 as f64 / n2f) / se;
    Some((2.0 * Normal::standard().sf(z.abs())).clamp(0.0, 1.0))
}

/// Grid intervals over ±`SPAN` standard deviations of each posterior: a
/// step of 0.008 deviations, far finer than 1e-4 needs. (The tails beyond
/// `SPAN` hold less than 1e-7 even for the most skewed posterior,
/// Beta(1, n).)
const STEPS: usize = 4000;
const SPAN: f64 = 16.0;

/// P(p_a > p_b) with independent Beta(1 + c, 1 + n - c) posteriors
/// (uniform priors), by numerical integration of `f(x)·F(x)`: `f` the
/// density of the narrower posterior, `F` the CDF of the other, so the
/// integrand is smooth on the grid's scale. `F` is itself integrated from
/// the density (statrs' regularized incomplete beta loses accuracy for
/// shapes in the millions, i.e. for experiments with millions of
/// exposures). Deterministic; agrees with the closed form to about 1e-7.
/// `None` when a count exceeds its `n`.
pub fn chance_to_beat(c_a: u64, n_a: u64, c_b: u64, n_b: u64) -> Option<f64> {
    if c_a > n_a || c_b > n_b {
        return None;
    }
    let a = Posterior::new(c_a, n_a)?;
    let b = Posterior::new(c_b, n_b)?;
    // P(A > B) = ∫ f_A F_B = 1 - ∫ f_B F_A.
    let p = if a.sd <= b.sd {
        integrate_density_times_cdf(&a, &Cdf::new(&b))
    } else {
        1.0 - integrate_density_times_cdf(&b, &Cdf::new(&a))
    };
    Some(p.clamp(0.0, 1.0))
}

/// A Beta posterior and the part of [0, 1] that holds its mass.
struct Posterior {
    dist: Beta,
    sd: f64,
    lo: f64,
    hi: f64,
}

impl Posterior {
    fn new(c: u64, n: u64) -> Option<Posterior> {
        let (x, y) = (1.0 + c as f64, 1.0 + (n - c) as f64);
        let dist = Beta::new(x, y).ok()?;
        let mean = x / (x + y);
        let sd = (x * y / ((x + y) * (x + y) * (x + y + 1.0))).sqrt();
        Some(Posterior {
            dist,
            sd,
            lo: (mean - SPAN * sd).max(0.0),
            hi: (mean + SPAN * sd).min(1.0),
        })
    }

    fn density(&self, t: f64) -> f64 {
        let ln = self.dist.ln_pdf(t);
        if ln.is_finite() { ln.exp() } else { 0.0 }
    }

    fn step(&self) -> f64 {
        (self.hi - self.lo) / STEPS as f64
    }
}

/// A posterior's CDF, tabulated on its grid by Simpson's rule per interval
/// and normalized to end at 1; between nodes, cubic Hermite interpolation
/// with the density as the derivative.
struct Cdf {
    lo: f64,
    h: f64,
    values: Vec<f64>,
    slopes: Vec<f64>,
}

impl Cdf {
    fn new(p: &Posterior) -> Cdf {
        let h = p.step();
        let mut values = Vec::with_capacity(STEPS + 1);
        let mut slopes = Vec::with_capacity(STEPS + 1);
        let mut acc = 0.0;
        let mut left = p.density(p.lo);
        values.push(0.0);
        slopes.push(left);
        for i in 1..=STEPS {
            let x = p.lo + i as f64 * h;
            let right = p.density(x);
            acc += h / 6.0 * (left + 4.0 * p.density(x - h / 2.0) + right);
            values.push(acc);
            slopes.push(right);
            left = right;
        }
        // Normalizing absorbs the truncated tails and any error in the
        // density's normalizing constant.
        if acc > 0.0 {
            values.iter_mut().for_each(|v| *v /= acc);
            slopes.iter_mut().for_each(|s| *s /= acc);
        }
        Cdf {
            lo: p.lo,
            h,
            values,
            slopes,
        }
    }

    fn at(&self, x: f64) -> f64 {
        if self.h <= 0.0 {
            return if x < self.lo { 0.0 } else { 1.0 };
        }
        let u = (x - self.lo) / self.h;
        if u <= 0.0 {
            return 0.0;
        }
        if u >= STEPS as f64 {
            return 1.0;
        }
        let i = (u.floor() as usize).min(STEPS - 1);
        let t = u - i as f64;
        let (t2, t3) = (t * t, t * t * t);
        let v = (2.0 * t3 - 3.0 * t2 + 1.0) * self.values[i]
            + (t3 - 2.0 * t2 + t) * self.h * self.slopes[i]
            + (-2.0 * t3 + 3.0 * t2) * self.values[i + 1]
            + (t3 - t2) * self.h * self.slopes[i + 1];
        v.clamp(0.0, 1.0)
    }
}

/// ∫ f_d(x) F(x) dx / ∫ f_d(x) dx over d's grid (Simpson).
fn integrate_density_times_cdf(d: &Posterior, cdf: &Cdf) -> f64 {
    let h = d.step();
    if h <= 0.0 {
        return cdf.at(d.lo);
    }
    let mut mass = 0.0;
    let mut sum = 0.0;
    for i in 0..=STEPS {
        let w = if i == 0 || i == STEPS {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let x = d.lo + i as f64 * h;
        let f = w * d.density(x);
        mass += f;
        sum += f * cdf.at(x);
    }
    if mass > 0.0 { sum / mass } else { 0.5 }
}

/// Pearson chi-square goodness of fit of `observed` exposures per arm
/// against `weights`. Arms with a positive weight are tested (missing ones
/// observed 0); arms with exposures but no positive weight are listed as
/// unexpected. `None` when fewer than two arms have a positive weight or
/// no exposures fall on them.
pub fn sample_ratio_check(
    observed: &[(String, u64)],
    weights: &[(String, f64)],
) -> Option<SampleRatio> {
    let weighted: Vec<(&str, f64)> = weights
        .iter()
        .filter(|(_, w)| w.is_finite() && *w > 0.0)
        .map(|(a, w)| (a.as_str(), *w))
        .collect();
    let seen = |arm: &str| {
        observed
            .iter()
            .filter(|(a, _)| a == arm)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let unexpected_arms: Vec<String> = observed
        .iter()
        .filter(|(a, n)| *n > 0 && !weighted.iter().any(|(w, _)| w == a))
        .map(|(a, _)| a.clone())
        .collect();
    let total: u64 = weighted.iter().map(|(a, _)| seen(a)).sum();
    if weighted.len() < 2 || total == 0 {
        return None;
    }
    let weight_sum: f64 = weighted.iter().map(|(_, w)| w).sum();
    let expected: Vec<(String, f64)> = weighted
        .iter()
        .map(|(a, w)| (a.to_string(), total as f64 * w / weight_sum))
        .collect();
    let chi_square: f64 = weighted
        .iter()
        .zip(&expected)
        .map(|((a, _), (_, e))| {
            let d = seen(a) as f64 - e;
            d * d / e
        })
        .sum();
    let degrees_of_freedom = (weighted.len() - 1) as u32;
    let p_value = ChiSquared::new(f64::from(degrees_of_freedom))
        .map(|d| d.sf(chi_square))
        .ok()
        .filter(|p| p.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0);
    Some(SampleRatio {
        chi_square,
        degrees_of_freedom,
        p_value,
        expected,
        mismatch: p_value < SRM_THRESHOLD || !unexpected_arms.is_empty(),
        unexpected_arms,
    })
}
