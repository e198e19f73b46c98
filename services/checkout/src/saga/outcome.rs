//! What the client is told: recorded as the saga's outcome the first time it is decided, and
//! replayed to every retry with the same idempotency key.

use tonic::{Code, Status};

use super::{Done, Engine, Failure, Run};
use crate::domain::{SagaState, Step};
use crate::downstream::StepError;
use crate::error::Error;
use crate::metrics::OutcomeKind;
use crate::store::{Change, Outcome, Saga, now_ms};

/// A checkout's answer to its client.
pub type Answer = Result<Done, Status>;

/// The reason every decided failure carries (unless it has one of its own): the checkout under
/// this idempotency key has ended for good — compensated, nothing charged — and a retry with
/// the key replays this answer. Without it, `UNAVAILABLE` or `ABORTED` still mean "retry with
/// the same key".
pub use mall_proto::reason::CHECKOUT_FAILED as DECIDED_FAILURE_REASON;

/// `status` with [`DECIDED_FAILURE_REASON`], unless it carries a reason already.
fn decided(status: Status) -> Status {
    if mall_common::error::reason_of(&status).is_some() {
        return status;
    }
    mall_common::error::with_reason(status.code(), status.message(), DECIDED_FAILURE_REASON)
}

pub(super) fn outcome_of(answer: &Answer) -> Outcome {
    match answer {
        Ok(_) => Outcome {
            code: Code::Ok,
            message: String::new(),
        },
        Err(s) => Outcome {
            code: s.code(),
            message: s.message().to_string(),
        },
    }
}

/// The recorded answer of `saga`: its ids, its error, or "in progress" while undecided.
pub(super) fn replay(saga: &Saga) -> Answer {
    match &saga.outcome {
        Some(o) if o.code == Code::Ok => {
            match (&saga.order_id, &saga.transaction_id, &saga.pay_url) {
                (Some(order), Some(tx), _) => Ok(Done {
                    order_id: order.clone(),
                    transaction_id: Some(tx.clone()),
                    pay_url: String::new(),
                }),
                (Some(order), None, Some(url)) => Ok(Done {
                    order_id: order.clone(),
                    transaction_id: None,
                    pay_url: url.clone(),
                }),
                _ => Err(Error::Corrupt(format!("saga {} succeeded without ids", saga.id)).into()),
            }
        }
        Some(o) => Err(decided(Status::new(o.code, o.message.clone()))),
        None => Err(Error::InProgress.into()),
    }
}

/// `failure`, unless it means this instance must stop writing: then that, as an error.
pub(super) fn unless_stopping(failure: Failure) -> Result<Failure, StepError> {
    match failure {
        Failure::Step(e) if e.ends_drive() => Err(e),
        failure => Ok(failure),
    }
}

impl Engine {
    /// Records `verdict` as the outcome (unless one is recorded already) with `change`,
    /// counting it; returns the recorded answer.
    pub(super) async fn decide(
        &self,
        run: &mut Run,
        mut change: Change,
        verdict: Result<Done, Failure>,
    ) -> Result<Answer, StepError> {
        let kind = match &verdict {
            Ok(_) => OutcomeKind::Success,
            Err(failure) => failure.kind(),
        };
        let answer = verdict.map_err(|failure| decided(failure.into_status()));
        let first = !run.outcome_recorded;
        if first {
            change.outcome = Some(outcome_of(&answer));
        }
        self.save(run, change).await?;
        if first {
            run.outcome_recorded = true;
            self.inner.metrics.outcome(kind);
        }
        Ok(answer)
    }

    /// Ends a saga that wrote nothing elsewhere.
    pub(super) async fn reject(
        &self,
        run: &mut Run,
        failure: Failure,
    ) -> Result<Answer, StepError> {
        let failure = unless_stopping(failure)?;
        tracing::info!(saga = %run.id, %failure, "checkout refused");
        let change = Change {
            state: Some(SagaState::Failed),
            step: Some(Step::Rejected),
            release_lease_at: Some(now_ms()),
            ..Change::default()
        };
        self.decide(run, change, Err(failure)).await
    }
}
