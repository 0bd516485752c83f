//! A durable append-only file of newline-terminated records, shared by the history
//! (`history.jsonl`) and the state journal (`locations.journal`).
//!
//! Guarantees:
//! - [`AppendLog::append`] returns after the bytes are written in one positioned write and
//!   fdatasynced; a new file's directory entry is fsynced too;
//! - a crash mid-append can only leave a torn last line (no newline). Before the first append of
//!   a process the file is cut back to its last complete line, so a new record never ends up
//!   glued to a torn one;
//! - a failed append is rolled back (the file is cut back to where it was); if even that fails
//!   the log refuses every later append rather than risk writing after a hole.
//!
//! The file I/O runs on the blocking pool, not on the async workers.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct AppendLog {
    path: PathBuf,
    file: Arc<Mutex<LogFile>>,
}

#[derive(Default)]
struct LogFile {
    /// Opened at the first append (or by [`AppendLog::open_at`]).
    file: Option<File>,
    /// Length of the complete, durable records; the next append writes here.
    len: u64,
    broken: bool,
}

impl AppendLog {
    /// A log opened lazily: the first append creates the file or cuts off a torn last line.
    pub fn new(path: PathBuf) -> Self {
        AppendLog {
            path,
            file: Arc::default(),
        }
    }

    /// Opens (creating) the log now and keeps only its first `valid_len` bytes: what a reader
    /// found to be complete records. Blocking; for startup.
    pub fn open_at(path: PathBuf, valid_len: u64) -> io::Result<Self> {
        let mut log = LogFile::default();
        log.open(&path, Some(valid_len))?;
        Ok(AppendLog {
            path,
            file: Arc::new(Mutex::new(log)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes` (whole lines, each ending in `\n`) and makes them durable.
    pub async fn append(&self, bytes: Vec<u8>) -> io::Result<()> {
        debug_assert!(bytes.ends_with(b"\n"), "records end with a newline");
        if bytes.is_empty() {
            return Ok(());
        }
        self.blocking(move |log, path| log.append(path, &bytes))
            .await
    }

    /// Empties the log durably (after its records went into a snapshot).
    pub async fn clear(&self) -> io::Result<()> {
        self.blocking(|log, path| log.clear(path)).await
    }

    async fn blocking<T, F>(&self, op: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogFile, &Path) -> io::Result<T> + Send + 'static,
    {
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut log = file.lock().unwrap_or_else(|p| p.into_inner());
            op(&mut log, &path)
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl LogFile {
    /// Opens or creates the file; `valid_len` None means "up to its last newline".
    fn open(&mut self, path: &Path, valid_len: Option<u64>) -> io::Result<()> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let actual = file.metadata()?.len();
        let valid = match valid_len {
            Some(valid) => valid.min(actual),
            None => complete_len(&file, actual)?,
        };
        if valid < actual {
            tracing::warn!(
                "{}: cutting off {} bytes of an incomplete last record",
                path.display(),
                actual - valid
            );
            file.set_len(valid)?;
            file.sync_all()?;
        }
        if created {
            // A new file's directory entry must be durable too.
            sync_parent(path)?;
        }
        self.file = Some(file);
        self.len = valid;
        Ok(())
    }

    /// The open file and the length of its complete records.
    fn ready(&mut self, path: &Path) -> io::Result<(&File, u64)> {
        if self.broken {
            return Err(io::Error::other(format!(
                "{} failed earlier and could not be repaired",
                path.display()
            )));
        }
        if self.file.is_none() {
            self.open(path, None)?;
        }
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("log file not open"))?;
        Ok((file, self.len))
    }

    fn append(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let (file, start) = self.ready(path)?;
        let written = file
            .write_all_at(bytes, start)
            .and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                self.len = start + bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Never leave part of a record behind for the next append to follow.
                if file.set_len(start).and_then(|()| file.sync_all()).is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    fn clear(&mut self, path: &Path) -> io::Result<()> {
        let (file, _) = self.ready(path)?;
        match file.set_len(0).and_then(|()| file.sync_all()) {
            Ok(()) => {
                self.len = 0;
                Ok(())
            }
            Err(e) => {
                // The length on disk is unknown now.
                self.broken = true;
                Err(e)
            }
        }
    }
}

/// Length of `file` up to and including its last newline (0 if it has none).
fn complete_len(file: &File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Replaces `path` atomically and durably: writes `path.tmp`, fsyncs it, renames it over `path`
/// and fsyncs the directory, so a crash leaves either the old or the new file, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_and_cuts_a_torn_tail_before_appending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = AppendLog::new(path.clone());
        log.append(b"one\n".to_vec()).await.expect("append");
        log.append(b"two\nthree\n".to_vec()).await.expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"one\ntwo\nthree\n");

        // A crash mid-append leaves a torn last line; the next process cuts it off first.
        fs::write(&path, b"one\ntwo\nthr").expect("write");
        let log = AppendLog::new(path.clone());
        log.append(b"four\n".to_vec()).await.expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"one\ntwo\nfour\n");

        let log = AppendLog::open_at(path.clone(), 4).expect("open");
        log.append(b"five\n".to_vec()).await.expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"one\nfive\n");
        log.clear().await.expect("clear");
        log.append(b"six\n".to_vec()).await.expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"six\n");
    }

    #[test]
    fn complete_len_finds_the_last_newline_across_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let mut text = vec![b'x'; 200_000];
        text[10] = b'\n';
        fs::write(&path, &text).expect("write");
        let file = File::open(&path).expect("open");
        assert_eq!(complete_len(&file, 200_000).expect("len"), 11);
        fs::write(&path, b"no newline").expect("write");
        let file = File::open(&path).expect("open");
        assert_eq!(complete_len(&file, 10).expect("len"), 0);
    }
}
