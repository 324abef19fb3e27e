//! The trait methods that run in Redis for both instance-aware counters, written once.
//!
//! `instance_counter_impl!(Type { …own methods… })` expands to the whole
//! `#[async_trait] impl InstanceAwareCounterTrait for Type`: the methods given, plus every
//! method that is one atomic script call for both counters. The type provides
//! `async fn apply_ops(&self, ops: &[Op<'_>]) -> Result<Vec<Outcome>, DistkitError>`.

use distkit_core::DistkitRedisKey;

use super::counter_trait::Pair;
use super::remote::Outcome;

/// The single outcome of a one-operation call.
pub(crate) fn only(outcomes: &[Outcome]) -> Outcome {
    outcomes.first().copied().unwrap_or_default()
}

/// `(key, C, I)` per update, from the new values.
pub(crate) fn with_new<'k>(
    keys: impl Iterator<Item = &'k DistkitRedisKey>,
    outcomes: Vec<Outcome>,
) -> Vec<(&'k DistkitRedisKey, i64, i64)> {
    keys.zip(outcomes)
        .map(|(key, outcome)| (key, outcome.new.0, outcome.new.1))
        .collect()
}

/// `(key, new, old)` per update.
pub(crate) fn with_both<'k>(
    keys: impl Iterator<Item = &'k DistkitRedisKey>,
    outcomes: Vec<Outcome>,
) -> Vec<(&'k DistkitRedisKey, Pair, Pair)> {
    keys.zip(outcomes)
        .map(|(key, outcome)| (key, outcome.new, outcome.old))
        .collect()
}

macro_rules! instance_counter_impl {
    ($counter:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl InstanceAwareCounterTrait for $counter {
        $($own)*
        async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
            let op = Op::on(Kind::Set, key, CounterComparator::Nil, count);
            Ok(only(&self.apply_ops(&[op]).await?).new)
        }

        async fn set_on_instance(
            &self,
            key: &DistkitRedisKey,
            count: i64,
        ) -> Result<Pair, DistkitError> {
            let op = Op::on(Kind::SetOnInstance, key, CounterComparator::Nil, count);
            Ok(only(&self.apply_ops(&[op]).await?).new)
        }

        async fn del(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError> {
            let op = Op::on(Kind::Del, key, CounterComparator::Nil, 0);
            Ok(only(&self.apply_ops(&[op]).await?).old)
        }

        async fn del_on_instance(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError> {
            let op = Op::on(Kind::DelOnInstance, key, CounterComparator::Nil, 0);
            let outcome = only(&self.apply_ops(&[op]).await?);
            Ok((outcome.new.0, outcome.old.1))
        }

        async fn clear(&self) -> Result<(), DistkitError> {
            self.apply_ops(&[Op::global(Kind::Clear)]).await.map(drop)
        }

        async fn clear_on_instance(&self) -> Result<(), DistkitError> {
            self.apply_ops(&[Op::global(Kind::ClearOnInstance)])
                .await
                .map(drop)
        }

        async fn inc_if(
            &self,
            key: &DistkitRedisKey,
            comparator: CounterComparator,
            count: i64,
        ) -> Result<(Pair, Pair), DistkitError> {
            let outcome = only(
                &self
                    .apply_ops(&[Op::on(Kind::Inc, key, comparator, count)])
                    .await?,
            );
            Ok((outcome.new, outcome.old))
        }

        async fn set_if(
            &self,
            key: &DistkitRedisKey,
            comparator: CounterComparator,
            count: i64,
        ) -> Result<(Pair, Pair), DistkitError> {
            let outcome = only(
                &self
                    .apply_ops(&[Op::on(Kind::Set, key, comparator, count)])
                    .await?,
            );
            Ok((outcome.new, outcome.old))
        }

        async fn set_on_instance_if(
            &self,
            key: &DistkitRedisKey,
            comparator: CounterComparator,
            count: i64,
        ) -> Result<(Pair, Pair), DistkitError> {
            let outcome = only(
                &self
                    .apply_ops(&[Op::on(Kind::SetOnInstance, key, comparator, count)])
                    .await?,
            );
            Ok((outcome.new, outcome.old))
        }

        async fn set_all<'k>(
            &self,
            updates: &[(&'k DistkitRedisKey, i64)],
        ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
            let ops = Op::each(Kind::Set, updates);
            Ok(with_new(
                updates.iter().map(|&(key, _)| key),
                self.apply_ops(&ops).await?,
            ))
        }

        async fn set_all_on_instance<'k>(
            &self,
            updates: &[(&'k DistkitRedisKey, i64)],
        ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
            let ops = Op::each(Kind::SetOnInstance, updates);
            Ok(with_new(
                updates.iter().map(|&(key, _)| key),
                self.apply_ops(&ops).await?,
            ))
        }

        async fn inc_all_if<'k>(
            &self,
            updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
        ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError> {
            let ops = Op::each_if(Kind::Inc, updates);
            Ok(with_both(
                updates.iter().map(|&(key, _, _)| key),
                self.apply_ops(&ops).await?,
            ))
        }

        async fn set_all_if<'k>(
            &self,
            updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
        ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError> {
            let ops = Op::each_if(Kind::Set, updates);
            Ok(with_both(
                updates.iter().map(|&(key, _, _)| key),
                self.apply_ops(&ops).await?,
            ))
        }

        async fn set_all_on_instance_if<'k>(
            &self,
            updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
        ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError> {
            let ops = Op::each_if(Kind::SetOnInstance, updates);
            Ok(with_both(
                updates.iter().map(|&(key, _, _)| key),
                self.apply_ops(&ops).await?,
            ))
        }
        }
    };
}

pub(crate) use instance_counter_impl;
