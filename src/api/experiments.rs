//! Admin GraphQL for experiments: the loaded definitions, results per arm
//! (`READ_RESULTS`), and forcing a variant for QA (`FORCE_VARIANT`). Each
//! field checks the caller's API key with [`crate::auth::require`].

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::auth::{Permission, require};
use crate::experiments::def::Experiment;
use crate::experiments::live::{ExperimentRunError, Report};
use crate::service::Baton;

#[derive(Default)]
pub struct ExperimentQuery;

#[derive(Default)]
pub struct ExperimentMutation;

fn run_error(err: ExperimentRunError) -> async_graphql::Error {
    crate::api::error::graphql_error(&err)
}

fn auth_error(err: crate::api::ApiError) -> async_graphql::Error {
    err.into_graphql()
}

/// An experiment as loaded from `experiments/`.
#[derive(SimpleObject)]
#[graphql(name = "Experiment")]
pub struct ExperimentInfo {
    pub id: ID,
    /// The flag whose variants are the arms.
    pub flag: String,
    pub control: String,
    /// Whether it assigns new users now (between `start` and `stop`).
    pub running: bool,
    /// The arms and their weights, as the flag's `fractional` splits them
    /// (empty when the flag has no single `fractional`).
    pub arms: Vec<ArmWeight>,
    pub goals: Vec<ExperimentGoal>,
}

#[derive(SimpleObject)]
pub struct ArmWeight {
    pub variant: String,
    pub weight: f64,
}

#[derive(SimpleObject)]
pub struct ExperimentGoal {
    pub flow_id: ID,
    pub node: String,
}

/// Results per arm, counted from the session log. The unit is the user
/// (what is randomized): an arm's exposures are the users exposed to it,
/// its conversions the users who reached a goal after an exposure.
/// Sessions that were forced in any way are left out.
#[derive(SimpleObject)]
pub struct ExperimentResults {
    pub experiment_id: ID,
    pub flag: String,
    pub control: String,
    /// Whether control has exposures or a weight.
    pub control_found: bool,
    pub arms: Vec<ArmResult>,
    /// `null` without exposures, without the flag's split, or with fewer
    /// than two weighted arms.
    pub sample_ratio: Option<SampleRatioCheck>,
}

#[derive(SimpleObject)]
pub struct ArmResult {
    pub variant: String,
    pub is_control: bool,
    /// Users exposed.
    pub exposures: i64,
    /// Users converted after an exposure.
    pub conversions: i64,
    /// `conversions / exposures`; `null` without exposures.
    pub rate: Option<f64>,
    /// 95% Wilson score interval of the rate.
    pub interval: Option<RateInterval>,
    pub exposed_sessions: i64,
    pub converted_sessions: i64,
    /// Against control; `null` for control, or without exposures.
    pub vs_control: Option<ControlComparison>,
}

#[derive(SimpleObject)]
pub struct RateInterval {
    pub low: f64,
    pub high: f64,
}

#[derive(SimpleObject)]
pub struct ControlComparison {
    /// `rate − control rate`.
    pub absolute: f64,
    /// `(rate − control rate) / control rate`; `null` when control's rate is 0.
    pub relative: Option<f64>,
    /// Two-sided p-value, pooled two-proportion z-test.
    pub p_value: f64,
    /// P(rate > control rate) under Beta(1 + c, 1 + n − c) posteriors.
    pub chance_to_beat_control: f64,
}

/// Exposures against the flag's weights (Pearson chi-square).
#[derive(SimpleObject)]
pub struct SampleRatioCheck {
    pub chi_square: f64,
    pub degrees_of_freedom: i32,
    pub p_value: f64,
    /// `pValue < 0.001`, or exposures in an arm without weight: the split
    /// is broken and the other numbers are not to be trusted.
    pub mismatch: bool,
    pub expected: Vec<ExpectedExposures>,
    pub unexpected_arms: Vec<String>,
}

#[derive(SimpleObject)]
pub struct ExpectedExposures {
    pub variant: String,
    pub exposures: f64,
}

fn info(exp: &Experiment, flags: &crate::flags::FlagSet, now_ms: i64) -> ExperimentInfo {
    ExperimentInfo {
        id: ID(exp.id.clone()),
        flag: exp.flag.clone(),
        control: exp.control.clone(),
        running: exp.is_running_at(now_ms),
        arms: crate::experiments::arm_weights(flags, &exp.flag)
            .unwrap_or_default()
            .into_iter()
            .map(|(variant, weight)| ArmWeight { variant, weight })
            .collect(),
        goals: exp
            .goals
            .iter()
            .map(|g| ExperimentGoal {
                flow_id: ID(g.flow.clone()),
                node: g.node.clone(),
            })
            .collect(),
    }
}

impl From<Report> for ExperimentResults {
    fn from(report: Report) -> Self {
        let r = report.results;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let arms = r
            .arms
            .into_iter()
            .map(|a| {
                let (exposed_sessions, converted_sessions) = report
                    .sessions
                    .iter()
                    .find(|(v, _, _)| *v == a.arm)
                    .map_or((0, 0), |(_, e, c)| (*e, *c));
                ArmResult {
                    is_control: a.is_control,
                    exposures: count(a.exposures),
                    conversions: count(a.conversions),
                    rate: a.rate,
                    interval: a.interval.map(|i| RateInterval {
                        low: i.low,
                        high: i.high,
                    }),
                    exposed_sessions,
                    converted_sessions,
                    vs_control: a.vs_control.map(|c| ControlComparison {
                        absolute: c.absolute,
                        relative: c.relative,
                        p_value: c.p_value,
                        chance_to_beat_control: c.chance_to_beat_control,
                    }),
                    variant: a.arm,
                }
            })
            .collect();
        ExperimentResults {
            experiment_id: ID(report.experiment),
            flag: report.flag,
            control: r.control,
            control_found: r.control_found,
            arms,
            sample_ratio: r.sample_ratio.map(|s| SampleRatioCheck {
                chi_square: s.chi_square,
                degrees_of_freedom: i32::try_from(s.degrees_of_freedom).unwrap_or(i32::MAX),
                p_value: s.p_value,
                mismatch: s.mismatch,
                expected: s
                    .expected
                    .into_iter()
                    .map(|(variant, exposures)| ExpectedExposures { variant, exposures })
                    .collect(),
                unexpected_arms: s.unexpected_arms,
            }),
        }
    }
}

#[Object]
impl ExperimentQuery {
    /// The experiments loaded from `--experiments`. Needs `READ_RESULTS`.
    async fn experiments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ExperimentInfo>> {
        require(ctx, Permission::ReadResults).map_err(auth_error)?;
        let baton = ctx.data_unchecked::<Baton>();
        let flags = baton.flags().current();
        let now = crate::experiments::live::now_ms();
        Ok(baton
            .experiments()
            .list()
            .iter()
            .map(|e| info(e, &flags, now))
            .collect())
    }

    /// Results of one experiment from the stored session events. Needs
    /// `READ_RESULTS`.
    async fn experiment_results(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<ExperimentResults> {
        require(ctx, Permission::ReadResults).map_err(auth_error)?;
        let baton = ctx.data_unchecked::<Baton>();
        let flags = baton.flags().current();
        let report = baton
            .experiments()
            .results(baton.store(), &flags, &id)
            .await
            .map_err(run_error)?;
        Ok(report.into())
    }
}

/// Force a variant for a user (their sessions that have no variant yet)
/// or for one running session.
#[derive(InputObject)]
pub struct ForceVariantInput {
    pub experiment_id: ID,
    pub variant: String,
    pub user_id: Option<ID>,
    pub session_id: Option<ID>,
}

#[derive(InputObject)]
pub struct ClearForcedVariantInput {
    pub experiment_id: ID,
    pub user_id: Option<ID>,
    pub session_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct ForcedVariant {
    pub experiment_id: ID,
    pub variant: String,
    pub user_id: Option<ID>,
    pub session_id: Option<ID>,
    /// The API key's name.
    pub forced_by: String,
}

enum Target {
    User(String),
    Session(String),
}

fn target(user_id: Option<ID>, session_id: Option<ID>) -> Result<Target, async_graphql::Error> {
    match (user_id, session_id) {
        (Some(u), None) => Ok(Target::User(u.0)),
        (None, Some(s)) => Ok(Target::Session(s.0)),
        _ => Err(run_error(ExperimentRunError::TargetInvalid {
            message: "give exactly one of `userId` and `sessionId`".into(),
        })),
    }
}

#[Object]
impl ExperimentMutation {
    /// Forces a variant (QA). Forced sessions never count in results.
    /// Needs `FORCE_VARIANT`.
    async fn force_variant(
        &self,
        ctx: &Context<'_>,
        input: ForceVariantInput,
    ) -> async_graphql::Result<ForcedVariant> {
        let who = require(ctx, Permission::ForceVariant).map_err(auth_error)?;
        let baton = ctx.data_unchecked::<Baton>();
        let flags = baton.flags().current();
        let experiments = baton.experiments();
        let target = target(input.user_id, input.session_id)?;
        match &target {
            Target::User(user) => experiments
                .force_user(
                    baton.store(),
                    &flags,
                    &input.experiment_id,
                    user,
                    Some(&input.variant),
                    &who.name,
                )
                .await
                .map_err(run_error)?,
            Target::Session(session) => experiments
                .force_session(
                    baton.store(),
                    &flags,
                    &input.experiment_id,
                    session,
                    Some(&input.variant),
                    &who.name,
                )
                .await
                .map_err(run_error)?,
        };
        let subject = match &target {
            Target::User(u) => format!("user:{u}"),
            Target::Session(s) => format!("session:{s}"),
        };
        baton
            .audit(
                &who.name,
                "experiment.variant_forced",
                &format!("experiment:{}", input.experiment_id.as_str()),
                None,
                serde_json::json!({ "variant": input.variant, "target": subject }),
            )
            .await;
        let (user_id, session_id) = match target {
            Target::User(u) => (Some(ID(u)), None),
            Target::Session(s) => (None, Some(ID(s))),
        };
        Ok(ForcedVariant {
            experiment_id: input.experiment_id,
            variant: input.variant,
            user_id,
            session_id,
            forced_by: who.name.clone(),
        })
    }

    /// Removes a forced variant; `true` when there was one. A session that
    /// was forced stays out of results. Needs `FORCE_VARIANT`.
    async fn clear_forced_variant(
        &self,
        ctx: &Context<'_>,
        input: ClearForcedVariantInput,
    ) -> async_graphql::Result<bool> {
        let who = require(ctx, Permission::ForceVariant).map_err(auth_error)?;
        let baton = ctx.data_unchecked::<Baton>();
        let flags = baton.flags().current();
        let experiments = baton.experiments();
        let target = target(input.user_id, input.session_id)?;
        let subject = match &target {
            Target::User(u) => format!("user:{u}"),
            Target::Session(s) => format!("session:{s}"),
        };
        let cleared = match target {
            Target::User(user) => experiments
                .force_user(
                    baton.store(),
                    &flags,
                    &input.experiment_id,
                    &user,
                    None,
                    &who.name,
                )
                .await
                .map_err(run_error),
            Target::Session(session) => experiments
                .force_session(
                    baton.store(),
                    &flags,
                    &input.experiment_id,
                    &session,
                    None,
                    &who.name,
                )
                .await
                .map_err(run_error),
        }?;
        baton
            .audit(
                &who.name,
                "experiment.variant_cleared",
                &format!("experiment:{}", input.experiment_id.as_str()),
                None,
                serde_json::json!({ "target": subject, "cleared": cleared }),
            )
            .await;
        Ok(cleared)
    }
}
