//! Ordered batches run as atomic chunks, shard by shard: the shared part of the counters'
//! and instance-aware counters' batch calls (`inc_all`, `set_all`, … and their flushes).
//!
//! One script call applies at most [`MAX_OPERATIONS_PER_CALL`] operations of one shard, all
//! or nothing. A batch larger than that, or spread over several shards, is several calls,
//! one after the other in the batch's order; when one fails, the error says exactly which
//! operations were applied.

use std::future::Future;
use std::ops::Range;

use distkit_core::{CounterError, DistkitError};

/// How many operations one script call carries at most, so that no single script holds
/// Redis for long.
pub(crate) const MAX_OPERATIONS_PER_CALL: usize = 1_000;

/// Whether a failed call was applied all the same: only its replicas' acknowledgement
/// failed.
fn applied_all_the_same(error: &DistkitError) -> bool {
    matches!(
        error,
        DistkitError::CounterError(CounterError::NotReplicated { .. })
    )
}

/// Runs `count` operations of one shard as chunks of at most [`MAX_OPERATIONS_PER_CALL`],
/// in order: `call(range)` runs the operations at `range` in one atomic script call and
/// returns their results. Returns every result, in order.
///
/// # Errors
///
/// The first chunk's error as it is (nothing else was sent). A later chunk's error as
/// [`CounterError::BatchPartiallyApplied`] with how many operations were applied: the
/// earlier chunks, and the failing one too when only its replica acknowledgement failed.
pub(crate) async fn in_chunks<R, F, Fut>(count: usize, mut call: F) -> Result<Vec<R>, DistkitError>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, DistkitError>>,
{
    let mut results = Vec::with_capacity(count);
    let mut start = 0_usize;
    while start < count {
        let end = start.saturating_add(MAX_OPERATIONS_PER_CALL).min(count);
        match call(start..end).await {
            Ok(chunk_results) => results.extend(chunk_results),
            Err(error) if results.is_empty() => return Err(error),
            Err(error) => {
                let applied = if applied_all_the_same(&error) {
                    results.len().saturating_add(end.saturating_sub(start))
                } else {
                    results.len()
                };
                return Err(CounterError::BatchPartiallyApplied {
                    applied,
                    source: Box::new(error),
                }
                .into());
            }
        }
        start = end;
    }
    Ok(results)
}

/// Runs `operations` shard by shard: `groups` are their positions by shard (see
/// [`crate::shards::group`]), in the order of each shard's first operation, and
/// `run(shard, operations)` runs one shard's operations, in order (with [`in_chunks`]).
/// Returns every result at its operation's position.
///
/// # Errors
///
/// The first shard's error as it is when it applied nothing. Otherwise
/// [`CounterError::ShardedBatchPartiallyApplied`], naming the positions applied (the earlier
/// shards', and what the failing shard applied before failing) and the failing shard's
/// error.
pub(crate) async fn shard_by_shard<T, R, F, Fut>(
    groups: Vec<(usize, Vec<usize>)>,
    operations: &[T],
    mut run: F,
) -> Result<Vec<R>, DistkitError>
where
    T: Copy,
    R: Clone + Default,
    F: FnMut(usize, Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, DistkitError>>,
{
    let mut results = vec![R::default(); operations.len()];
    let mut applied: Vec<usize> = Vec::with_capacity(operations.len());
    for (shard, positions) in groups {
        let shard_operations: Vec<T> = positions
            .iter()
            .filter_map(|&position| operations.get(position).copied())
            .collect();
        match run(shard, shard_operations).await {
            Ok(shard_results) => {
                for (&position, result) in positions.iter().zip(shard_results) {
                    if let Some(slot) = results.get_mut(position) {
                        *slot = result;
                    }
                }
                applied.extend(positions);
            }
            Err(error) => {
                // What this shard applied before failing (its earlier chunks, and the
                // failing one when only its replica acknowledgement failed).
                let (shard_applied, source) = match error {
                    DistkitError::CounterError(CounterError::BatchPartiallyApplied {
                        applied: shard_applied,
                        source,
                    }) => (shard_applied, *source),
                    // The shard's first chunk was applied; its replicas did not confirm.
                    error if applied_all_the_same(&error) => {
                        (positions.len().min(MAX_OPERATIONS_PER_CALL), error)
                    }
                    other => (0, other),
                };
                applied.extend(positions.iter().take(shard_applied));
                if applied.is_empty() {
                    return Err(source);
                }
                applied.sort_unstable();
                return Err(CounterError::ShardedBatchPartiallyApplied {
                    applied,
                    source: Box::new(source),
                }
                .into());
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use distkit_core::fred::error::{Error, ErrorKind};

    use super::*;

    fn not_replicated() -> DistkitError {
        CounterError::NotReplicated {
            key: None,
            acknowledged: 0,
            required: 1,
        }
        .into()
    }

    fn refused() -> DistkitError {
        DistkitError::RedisError(Error::new(ErrorKind::Unknown, "refused"))
    }

    /// Runs `count` operations in chunks, the chunk starting at `failing` (if any) failing
    /// with `error()`; returns the outcome and the ranges called.
    async fn chunks_failing_at(
        count: usize,
        failing: Option<usize>,
        error: fn() -> DistkitError,
    ) -> (Result<Vec<usize>, DistkitError>, Vec<Range<usize>>) {
        let calls = RefCell::new(Vec::new());
        let outcome = in_chunks(count, |range: Range<usize>| {
            calls.borrow_mut().push(range.clone());
            let fails = failing == Some(range.start);
            async move {
                if fails {
                    Err(error())
                } else {
                    Ok(range.collect::<Vec<usize>>())
                }
            }
        })
        .await;
        (outcome, calls.into_inner())
    }

    #[tokio::test]
    async fn a_batch_is_cut_into_ordered_chunks_and_its_results_keep_their_order() {
        let count = MAX_OPERATIONS_PER_CALL * 2 + 7;
        let (outcome, calls) = chunks_failing_at(count, None, refused).await;
        assert_eq!(outcome.ok(), Some((0..count).collect::<Vec<usize>>()));
        let expected = vec![
            0..MAX_OPERATIONS_PER_CALL,
            MAX_OPERATIONS_PER_CALL..MAX_OPERATIONS_PER_CALL * 2,
            MAX_OPERATIONS_PER_CALL * 2..count,
        ];
        assert_eq!(calls, expected);
        let (outcome, calls) = chunks_failing_at(0, None, refused).await;
        assert_eq!(outcome.ok(), Some(Vec::new()));
        assert!(calls.is_empty(), "an empty batch sends nothing");
    }

    #[tokio::test]
    async fn a_failed_first_chunk_is_its_own_error_and_nothing_more_is_sent() {
        let (outcome, calls) =
            chunks_failing_at(MAX_OPERATIONS_PER_CALL + 1, Some(0), refused).await;
        assert!(matches!(outcome, Err(DistkitError::RedisError(_))));
        assert_eq!(calls.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_later_chunk_says_how_many_operations_were_applied() {
        let count = MAX_OPERATIONS_PER_CALL * 3;
        let second = MAX_OPERATIONS_PER_CALL;
        let (outcome, calls) = chunks_failing_at(count, Some(second), refused).await;
        let Err(DistkitError::CounterError(CounterError::BatchPartiallyApplied {
            applied, ..
        })) = outcome
        else {
            panic!("expected a partly applied batch, got {outcome:?}");
        };
        assert_eq!(applied, MAX_OPERATIONS_PER_CALL, "only the first chunk");
        assert_eq!(calls.len(), 2, "nothing is sent after the failing chunk");
        // A chunk whose replicas did not acknowledge it was applied all the same.
        let (outcome, _) = chunks_failing_at(count, Some(second), not_replicated).await;
        let Err(DistkitError::CounterError(CounterError::BatchPartiallyApplied {
            applied, ..
        })) = outcome
        else {
            panic!("expected a partly applied batch, got {outcome:?}");
        };
        assert_eq!(applied, MAX_OPERATIONS_PER_CALL * 2);
    }

    /// Runs operations `0..count` spread over `groups`, shard `failing` (if any) failing as
    /// `fail(operations of the shard)` says; returns the outcome and the shards called.
    async fn shards_failing(
        groups: Vec<(usize, Vec<usize>)>,
        count: usize,
        failing: Option<usize>,
        fail: fn(usize) -> DistkitError,
    ) -> (Result<Vec<usize>, DistkitError>, Vec<usize>) {
        let operations: Vec<usize> = (0..count).collect();
        let calls = RefCell::new(Vec::new());
        let outcome = shard_by_shard(groups, &operations, |shard, shard_operations| {
            calls.borrow_mut().push(shard);
            let fails = failing == Some(shard);
            async move {
                if fails {
                    Err(fail(shard_operations.len()))
                } else {
                    Ok(shard_operations
                        .iter()
                        .map(|op| op.saturating_mul(10))
                        .collect())
                }
            }
        })
        .await;
        (outcome, calls.into_inner())
    }

    #[tokio::test]
    async fn shard_results_land_at_their_operations_positions() {
        let groups = vec![(3, vec![0, 2, 5]), (1, vec![1, 4]), (7, vec![3])];
        let (outcome, calls) = shards_failing(groups, 6, None, |_| refused()).await;
        assert_eq!(outcome.ok(), Some(vec![0, 10, 20, 30, 40, 50]));
        assert_eq!(
            calls,
            vec![3, 1, 7],
            "in the order of each shard's first operation"
        );
    }

    #[tokio::test]
    async fn a_failed_later_shard_names_exactly_the_positions_applied() {
        let groups = || vec![(3, vec![0, 2, 5]), (1, vec![1, 4]), (7, vec![3])];
        // The first shard fails having applied nothing: its own error, nothing more sent.
        let (outcome, calls) = shards_failing(groups(), 6, Some(3), |_| refused()).await;
        assert!(matches!(outcome, Err(DistkitError::RedisError(_))));
        assert_eq!(calls, vec![3]);
        // The second shard fails having applied nothing: the first shard's positions.
        let (outcome, calls) = shards_failing(groups(), 6, Some(1), |_| refused()).await;
        let Err(DistkitError::CounterError(CounterError::ShardedBatchPartiallyApplied {
            applied,
            ..
        })) = outcome
        else {
            panic!("expected a partly applied sharded batch, got {outcome:?}");
        };
        assert_eq!(applied, vec![0, 2, 5]);
        assert_eq!(calls, vec![3, 1]);
        // The second shard applied its first operation before failing.
        let (outcome, _) = shards_failing(groups(), 6, Some(1), |_| {
            CounterError::BatchPartiallyApplied {
                applied: 1,
                source: Box::new(refused()),
            }
            .into()
        })
        .await;
        let Err(DistkitError::CounterError(CounterError::ShardedBatchPartiallyApplied {
            applied,
            ..
        })) = outcome
        else {
            panic!("expected a partly applied sharded batch, got {outcome:?}");
        };
        assert_eq!(applied, vec![0, 1, 2, 5], "sorted positions");
        // The first shard was applied but its replicas did not confirm it.
        let (outcome, _) = shards_failing(groups(), 6, Some(3), |_| not_replicated()).await;
        let Err(DistkitError::CounterError(CounterError::ShardedBatchPartiallyApplied {
            applied,
            source,
        })) = outcome
        else {
            panic!("expected a partly applied sharded batch, got {outcome:?}");
        };
        assert_eq!(applied, vec![0, 2, 5]);
        assert!(matches!(
            *source,
            DistkitError::CounterError(CounterError::NotReplicated { .. })
        ));
    }
}
