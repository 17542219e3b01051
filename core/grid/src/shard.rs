//! Deterministic sharding of a grid's cells across processes or machines.
//!
//! [`Shard::select`] takes the items whose position satisfies `position % N == i` (round-robin).
//! `ablate run --shard i/N` does not split cells this way: it deals whole batches of chains
//! (`ablate_engine::planner::deal`), so that a batch never straddles two shards. The
//! index comes from `--shard i/N`, or from the environment of a Slurm job array
//! (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes indexed job
//! (`JOB_COMPLETION_INDEX`, with `N` given by the caller).

use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count` (0 <= index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// A shard specification that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShardError(pub String);

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError("shard count is 0; it must be at least 1".into()));
        }
        if index >= count {
            return Err(ShardError(format!(
                "shard index {index} is out of range for {count} shards (indices start at 0: 0..={})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `i/N` (as given to `--shard`).
    pub fn parse(s: &str) -> Result<Shard, ShardError> {
        let usage = "write --shard i/N with 0 <= i < N, e.g. --shard 0/4";
        let (i, n) = s.split_once('/').ok_or_else(|| ShardError(format!("shard {s:?} has no '/'; {usage}")))?;
        let num = |part: &str, what: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| ShardError(format!("shard {s:?}: {what} {part:?} is not a non-negative integer; {usage}")))
        };
        Shard::new(num(i, "index")?, num(n, "count")?)
    }

    /// The shard of this process from the environment (see [`shard_from_vars`]).
    pub fn from_env(count: Option<usize>) -> Result<Option<Shard>, ShardError> {
        shard_from_vars(|k| std::env::var(k).ok(), count)
    }

    /// Does the cell at `position` belong to this shard?
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// The items of this shard, in order.
    pub fn select<'a, T>(&self, items: &'a [T]) -> Vec<&'a T> {
        items.iter().skip(self.index).step_by(self.count).collect()
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        Shard::parse(s)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Round-robin subset: the items at positions `index`, `index + count`, ... An invalid shard
/// (`count == 0` or `index >= count`) selects nothing; use [`Shard::new`] to get an error.
pub fn shard<T>(cells: &[T], index: usize, count: usize) -> Vec<&T> {
    match Shard::new(index, count) {
        Ok(s) => s.select(cells),
        Err(_) => Vec::new(),
    }
}

/// `(index, count)` of this process from the environment, or `None` when neither a Slurm array
/// task nor a Kubernetes indexed job is detected. `count` is required for Kubernetes (there is
/// no standard variable for it) and, when given, overrides Slurm's count.
pub fn shard_from_env(count: Option<usize>) -> Result<Option<(usize, usize)>, ShardError> {
    Ok(Shard::from_env(count)?.map(|s| (s.index, s.count)))
}

/// [`shard_from_env`] with the environment given as a function (for tests).
///
/// Slurm: index = (`SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN`) / `SLURM_ARRAY_TASK_STEP`
/// (min 0 and step 1 when unset), count = `SLURM_ARRAY_TASK_COUNT`. Kubernetes: index =
/// `JOB_COMPLETION_INDEX`.
pub fn shard_from_vars(
    get: impl Fn(&str) -> Option<String>,
    count: Option<usize>,
) -> Result<Option<Shard>, ShardError> {
    let num =
        |name: &str| -> Result<Option<usize>, ShardError> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    ShardError(format!("environment variable {name}={v:?} is not a non-negative integer"))
                }),
            }
        };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        if id < min {
            return Err(ShardError(format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")));
        }
        let n = match (count, num("SLURM_ARRAY_TASK_COUNT")?) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(ShardError(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass the shard count explicitly"
                        .into(),
                ))
            }
        };
        return Shard::new((id - min) / step, n)
            .map(Some)
            .map_err(|e| ShardError(format!("from the Slurm array environment: {e}")));
    }
    if let Some(idx) = num("JOB_COMPLETION_INDEX")? {
        let n = count.ok_or_else(|| {
            ShardError(
                "JOB_COMPLETION_INDEX is set but the shard count is unknown; pass it (the Job's `completions`)".into(),
            )
        })?;
        return Shard::new(idx, n).map(Some).map_err(|e| ShardError(format!("from JOB_COMPLETION_INDEX: {e}")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn parse_shards() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        assert_eq!(" 0 / 1".parse::<Shard>().unwrap(), Shard { index: 0, count: 1 });
        for bad in ["4/4", "1/0", "1", "a/2", "-1/2", "1/2/3", ""] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.0.contains("shard"), "{bad}: {e}");
        }
        assert!(Shard::parse("4/4").unwrap_err().0.contains("out of range"));
    }

    #[test]
    fn shards_partition() {
        let items: Vec<usize> = (0..23).collect();
        for n in 1..8 {
            let mut all: Vec<usize> = (0..n).flat_map(|i| shard(&items, i, n)).copied().collect();
            all.sort_unstable();
            assert_eq!(all, items, "{n} shards");
            for i in 0..n {
                let s = Shard::new(i, n).unwrap();
                assert!(shard(&items, i, n).iter().all(|&&p| s.contains(p)));
            }
        }
        assert!(shard(&items, 3, 3).is_empty());
    }

    #[test]
    fn from_environment() {
        assert_eq!(shard_from_vars(env(&[]), None).unwrap(), None);
        let s = shard_from_vars(env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "8")]), None);
        assert_eq!(s.unwrap(), Some(Shard { index: 3, count: 8 }));
        let s = shard_from_vars(
            env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]),
            None,
        );
        assert_eq!(s.unwrap(), Some(Shard { index: 2, count: 4 }));
        let s = shard_from_vars(env(&[("JOB_COMPLETION_INDEX", "2")]), Some(5));
        assert_eq!(s.unwrap(), Some(Shard { index: 2, count: 5 }));
        assert!(shard_from_vars(env(&[("JOB_COMPLETION_INDEX", "2")]), None).is_err());
        assert!(shard_from_vars(env(&[("JOB_COMPLETION_INDEX", "x")]), Some(3)).is_err());
        assert!(shard_from_vars(env(&[("SLURM_ARRAY_TASK_ID", "9"), ("SLURM_ARRAY_TASK_COUNT", "8")]), None).is_err());
    }
}
