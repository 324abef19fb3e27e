//! The trait methods that are one atomic `counter_apply` call for both counters, written once.
//!
//! `counter_impl!(Type { …own methods… })` expands to the whole
//! `#[async_trait] impl CounterTrait for Type`: the methods given, plus `set`, `del`, `inc_if`,
//! `set_if`, `set_all`, `inc_all_if` and `set_all_if`. The type provides
//! `async fn apply_ops(&self, ops: &[Operation<'_>]) -> Result<Vec<(i64, i64)>, DistkitError>`.

macro_rules! counter_impl {
    ($counter:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl CounterTrait for $counter {
            $($own)*

            async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
                let operation = Operation::new(OperationKind::Set, key, CounterComparator::Nil, count);
                Ok(single(&self.apply_ops(&[operation]).await?).0)
            }

            async fn del(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
                let operation = Operation::new(OperationKind::Del, key, CounterComparator::Nil, 0);
                Ok(single(&self.apply_ops(&[operation]).await?).1)
            }

            async fn inc_if(&self, key: &DistkitRedisKey, comparator: CounterComparator, count: i64) -> Result<(i64, i64), DistkitError> {
                let operation = Operation::new(OperationKind::Inc, key, comparator, count);
                Ok(single(&self.apply_ops(&[operation]).await?))
            }

            async fn set_if(&self, key: &DistkitRedisKey, comparator: CounterComparator, count: i64) -> Result<(i64, i64), DistkitError> {
                let operation = Operation::new(OperationKind::Set, key, comparator, count);
                Ok(single(&self.apply_ops(&[operation]).await?))
            }

            async fn set_all<'k>(&self, updates: &[(&'k DistkitRedisKey, i64)]) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
                let results = self.apply_ops(&Operation::each(OperationKind::Set, updates)).await?;
                Ok(with_new(updates.iter().map(|&(key, _)| key), results))
            }

            async fn inc_all_if<'k>(
                &self,
                updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
            ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
                let results = self.apply_ops(&Operation::each_if(OperationKind::Inc, updates)).await?;
                Ok(with_new_and_old(updates.iter().map(|&(key, _, _)| key), results))
            }

            async fn set_all_if<'k>(
                &self,
                updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
            ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
                let results = self.apply_ops(&Operation::each_if(OperationKind::Set, updates)).await?;
                Ok(with_new_and_old(updates.iter().map(|&(key, _, _)| key), results))
            }
        }
    };
}

pub(crate) use counter_impl;
