//! Plan limits (an application's requests per minute and per month) and the per-key GraphQL
//! rate limit, on top of the shared counters.

use std::time::Duration;

use entity::application;
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

use super::counters::{UsageCounters, Window};
use crate::error::{Error, Result};
use crate::thread_front::ThreadFront;

/// Plan limits are configuration, not security: a change may take this long to apply.
const PLAN_TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Default)]
struct Plan {
    per_minute: Option<i64>,
    per_month: Option<i64>,
}

pub struct Limits {
    pub counters: UsageCounters,
    plans: moka::sync::Cache<Uuid, Plan, crate::FastHasher>,
    /// Each HTTP worker reads plans through a front of its own.
    plans_front: ThreadFront<Uuid, Plan>,
    graphql_per_minute: u64,
}

impl Limits {
    pub fn new(graphql_per_minute: u64) -> Self {
        Self {
            counters: UsageCounters::default(),
            plans: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(PLAN_TTL)
                .build_with_hasher(crate::FastHasher::default()),
            plans_front: ThreadFront::default(),
            graphql_per_minute,
        }
    }

    /// Counts one request of `application_id` against its plan, or refuses it with
    /// `RATE_LIMITED` when a limit is reached.
    pub async fn count_request(&self, db: &DatabaseConnection, application_id: Uuid) -> Result<()> {
        let epoch = self.plans_front.epoch();
        let cached = self
            .plans_front
            .get_or(&application_id, epoch, || self.plans.get(&application_id));
        let plan = match cached {
            Some(plan) => plan,
            None => {
                // Boxed: a database future inline would make every call's future as large.
                let plan = Box::pin(load_plan(db, application_id)).await?;
                self.plans_front.keep_unless_changed(
                    epoch,
                    || self.plans.insert(application_id, plan),
                    || self.plans.invalidate(&application_id),
                );
                plan
            }
        };
        if let Some(limit) = plan.per_minute {
            let key = plan_key(application_id, Window::Minute);
            self.counters
                .take_shared(db, &key, Window::Minute, limit, 1)
                .await?;
        }
        if let Some(limit) = plan.per_month {
            let key = plan_key(application_id, Window::Month);
            let month = self
                .counters
                .take_shared(db, &key, Window::Month, limit, 1)
                .await;
            if let Err(refused) = month {
                // The minute window counted a request that is not served; give it back.
                if plan.per_minute.is_some() {
                    self.counters
                        .give_back(&plan_key(application_id, Window::Minute), Window::Minute);
                }
                return Err(refused);
            }
        }
        Ok(())
    }

    /// Where `application` stands against each limit of its plan, in the current windows.
    pub async fn plan_usage(
        &self,
        db: &DatabaseConnection,
        application: &application::Model,
    ) -> Result<PlanUsage> {
        let mut usage = PlanUsage::default();
        for (window, limit, slot) in [
            (
                Window::Minute,
                application.requests_per_minute,
                &mut usage.minute,
            ),
            (
                Window::Month,
                application.requests_per_month,
                &mut usage.month,
            ),
        ] {
            if let Some(limit) = limit {
                let key = plan_key(application.id, window);
                let (used, resets_at) = self.counters.used(db, &key, window).await?;
                *slot = Some(WindowUsage {
                    used,
                    limit,
                    resets_at,
                });
            }
        }
        Ok(usage)
    }

    /// A plan changed: apply it on the next request.
    pub fn forget_plan(&self, application_id: Uuid) {
        self.plans_front
            .changed(|| self.plans.invalidate(&application_id));
    }

    /// Counts `cost` root fields of one GraphQL operation against the key's per-minute limit.
    pub async fn count_graphql(
        &self,
        db: &DatabaseConnection,
        key_id: Uuid,
        cost: usize,
    ) -> Result<()> {
        if self.graphql_per_minute == 0 {
            return Ok(());
        }
        let limit = i64::try_from(self.graphql_per_minute).unwrap_or(i64::MAX);
        let cost = i64::try_from(cost).unwrap_or(i64::MAX).max(1);
        if cost > limit {
            return Err(Error::bad_input(format!(
                "the operation selects {cost} root fields; this key may run {limit} a minute"
            )));
        }
        let key = format!("graphql:{key_id}:minute");
        self.counters
            .take_shared(db, &key, Window::Minute, limit, cost)
            .await
    }
}

/// Requests counted against one limit in its current window.
pub struct WindowUsage {
    pub used: i64,
    pub limit: i64,
    pub resets_at: chrono::DateTime<chrono::Utc>,
}

/// An application's standing against its plan: none for a window without a limit.
#[derive(Default)]
pub struct PlanUsage {
    pub minute: Option<WindowUsage>,
    pub month: Option<WindowUsage>,
}

fn plan_key(application_id: Uuid, window: Window) -> String {
    match window {
        Window::Minute => format!("plan:{application_id}:minute"),
        Window::Month => format!("plan:{application_id}:month"),
    }
}

/// The application's plan as stored; a missing row means no limits.
async fn load_plan(db: &DatabaseConnection, application_id: Uuid) -> Result<Plan> {
    Ok(application::Entity::find_by_id(application_id)
        .one(db)
        .await?
        .map(|a| Plan {
            per_minute: a.requests_per_minute,
            per_month: a.requests_per_month,
        })
        .unwrap_or_default())
}
