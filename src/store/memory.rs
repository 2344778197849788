//! A [`LineStore`] in this process's memory: the sandbox and engine unit
//! tests. Same contract as the durable stores, so code written against it
//! behaves the same on them; it never answers `Unknown`.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    check_batch, judge, last_hash_of, line_hash, Batch, Head, Judgement, LineStore, Loaded,
    StoreError, Tip,
};

/// The most bytes one append may carry (as the kube store).
const MAX_BATCH_BYTES: usize = super::kube::MAX_BATCH_BYTES;

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<String>,
    epoch: u64,
    writer: String,
    /// Position of the latest checkpoint line.
    checkpoint: Option<u64>,
}

impl State {
    fn head(&self) -> Head {
        Head {
            position: self.lines.len() as u64,
            last_hash: last_hash_of(&self.lines, ""),
            epoch: self.epoch,
            writer: self.writer.clone(),
            tip: Tip::Plain,
        }
    }

    fn loaded_from(&self, position: u64) -> Loaded {
        let start = (position as usize).min(self.lines.len());
        let prev_hash = match start {
            0 => String::new(),
            n => line_hash(&self.lines[n - 1]),
        };
        Loaded {
            first: start as u64,
            prev_hash,
            lines: self.lines[start..].to_vec(),
            head: self.head(),
        }
    }

    fn loaded(&self) -> Loaded {
        self.loaded_from(self.checkpoint.unwrap_or(0))
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LineStore for MemoryStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        Ok(self.state().loaded())
    }

    async fn load_from(&self, position: u64) -> Result<Loaded, StoreError> {
        Ok(self.state().loaded_from(position))
    }

    async fn takeover(&self, writer: &str) -> Result<Loaded, StoreError> {
        let mut state = self.state();
        state.epoch += 1;
        writer.clone_into(&mut state.writer);
        Ok(state.loaded())
    }

    async fn append(&self, head: &Head, batch: &Batch) -> Result<Head, StoreError> {
        check_batch(batch, MAX_BATCH_BYTES)?;
        let mut state = self.state();
        let start = (head.position as usize).min(state.lines.len());
        let after = &state.lines[start..];
        let stale = head.position as usize > state.lines.len();
        match judge(batch, head.epoch, after, state.epoch) {
            Judgement::Absent if !stale => {
                if batch.checkpoint {
                    state.checkpoint = Some(head.position);
                }
                state.lines.extend(batch.lines.iter().cloned());
                Ok(state.head())
            }
            // Asked again after it landed: the same answer, stored once.
            Judgement::Landed if !stale => Ok(state.head()),
            _ => Err(StoreError::Superseded {
                writer: state.writer.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(texts: &[&str]) -> Batch {
        Batch::new(texts.iter().map(|t| t.to_string()).collect())
    }

    #[tokio::test]
    async fn appends_load_back_in_order_with_the_hash_of_the_last_line() {
        let store = MemoryStore::new();
        let loaded = store.takeover("a").await.unwrap();
        assert!(loaded.lines.is_empty());
        let head = store
            .append(&loaded.head, &batch(&["1", "2"]))
            .await
            .unwrap();
        let head = store.append(&head, &batch(&["3"])).await.unwrap();
        assert_eq!(head.position, 3);
        assert_eq!(head.last_hash, line_hash("3"));
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.lines, ["1", "2", "3"]);
        assert_eq!(loaded.head, head);
    }

    #[tokio::test]
    async fn after_a_takeover_the_old_writer_is_superseded() {
        let store = MemoryStore::new();
        let old = store.takeover("a").await.unwrap().head;
        let old = store.append(&old, &batch(&["1"])).await.unwrap();
        let new = store.takeover("b").await.unwrap();
        assert_eq!(new.lines, ["1"]);
        let refused = store.append(&old, &batch(&["2"])).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Superseded { writer } if writer == "b"),
            "{refused}"
        );
        store.append(&new.head, &batch(&["2'"])).await.unwrap();
        assert_eq!(store.load().await.unwrap().lines, ["1", "2'"]);
    }

    #[tokio::test]
    async fn the_same_append_asked_twice_is_stored_once_and_a_racing_one_is_superseded() {
        let store = MemoryStore::new();
        let head = store.takeover("a").await.unwrap().head;
        let first = store.append(&head, &batch(&["1"])).await.unwrap();
        let again = store.append(&head, &batch(&["1"])).await.unwrap();
        assert_eq!(first, again);
        let other = store.append(&head, &batch(&["other"])).await.unwrap_err();
        assert!(matches!(other, StoreError::Superseded { .. }), "{other}");
        assert_eq!(store.load().await.unwrap().lines, ["1"]);
    }

    #[tokio::test]
    async fn load_starts_at_the_latest_checkpoint_and_load_from_anywhere() {
        let store = MemoryStore::new();
        let head = store.takeover("a").await.unwrap().head;
        let head = store.append(&head, &batch(&["1", "2"])).await.unwrap();
        let checkpoint = Batch::checkpoint(vec!["cp".into(), "3".into()]);
        let head = store.append(&head, &checkpoint).await.unwrap();
        store.append(&head, &batch(&["4"])).await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.first, 2);
        assert_eq!(loaded.lines, ["cp", "3", "4"]);
        assert_eq!(loaded.prev_hash, line_hash("2"));
        assert_eq!(
            store.load_from(1).await.unwrap().lines,
            ["2", "cp", "3", "4"]
        );
    }

    #[tokio::test]
    async fn a_bad_batch_changes_nothing() {
        let store = MemoryStore::new();
        let head = store.takeover("a").await.unwrap().head;
        let refused = store.append(&head, &batch(&["a\nb"])).await.unwrap_err();
        assert!(matches!(refused, StoreError::Invalid { .. }), "{refused}");
        assert!(store.load().await.unwrap().lines.is_empty());
    }
}
