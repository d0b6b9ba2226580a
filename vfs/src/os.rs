//! [`OsFs`]: the real file system.
//!
//! `sync_data` is `fdatasync`; `sync_dir` opens the directory and calls `fsync` on it, which
//! is what makes a creation, rename or removal durable on Linux file systems. The lock is an
//! `flock` on a lock file: it is per open file description, so a second `lock` of the same
//! path fails even from the same process, and the kernel drops it when the process dies.

use std::fs;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{File, FileSystem, FsError, FsErrorKind, LockGuard, OpKind, Result};

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

impl OsFs {
    /// The OS file system.
    pub fn new() -> Self {
        OsFs
    }
}

#[derive(Debug)]
struct OsFile {
    path: PathBuf,
    file: fs::File,
}

fn open_options(create_new: bool) -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.read(true).append(true);
    if create_new {
        options.create_new(true);
    }
    options
}

impl FileSystem for OsFs {
    fn create(&self, path: &Path) -> Result<Box<dyn File>> {
        let file = open_options(true).open(path).map_err(|e| FsError::from_io(OpKind::Create, path, e))?;
        Ok(Box::new(OsFile { path: path.to_path_buf(), file }))
    }

    fn open(&self, path: &Path) -> Result<Box<dyn File>> {
        let file = open_options(false).open(path).map_err(|e| FsError::from_io(OpKind::Open, path, e))?;
        Ok(Box::new(OsFile { path: path.to_path_buf(), file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| {
            FsError::from_io(OpKind::Rename, from, e).with_detail(format!("to {}", to.display()))
        })
    }

    fn remove(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| FsError::from_io(OpKind::Remove, path, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let err = |e| FsError::from_io(OpKind::List, dir, e);
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            // A name that is not UTF-8 cannot be one of ours; callers treat it as foreign.
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn create_dir(&self, path: &Path) -> Result<()> {
        fs::create_dir_all(path).map_err(|e| FsError::from_io(OpKind::CreateDir, path, e))
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        let err = |e| FsError::from_io(OpKind::SyncDir, path, e);
        fs::File::open(path).map_err(err)?.sync_all().map_err(err)
    }

    fn lock(&self, path: &Path) -> Result<LockGuard> {
        let err = |e| FsError::from_io(OpKind::Lock, path, e);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => Ok(LockGuard::new(Box::new(file))),
            Err(fs::TryLockError::WouldBlock) => Err(FsError::new(OpKind::Lock, path, FsErrorKind::Locked)
                .with_detail("another process or handle holds the lock; is another instance open?")),
            Err(fs::TryLockError::Error(e)) => Err(err(e)),
        }
    }
}

impl File for OsFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, data: &[u8]) -> Result<()> {
        // The file is opened with O_APPEND, so every write lands at the current end.
        (&self.file).write_all(data).map_err(|e| FsError::from_io(OpKind::Append, &self.path, e))
    }

    fn append_vectored(&self, bufs: &[&[u8]]) -> Result<()> {
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        // `writev` may write less than asked, and takes at most IOV_MAX (1024) buffers.
        while !rest.is_empty() {
            let batch = rest.len().min(1024);
            let written = match (&self.file).write_vectored(&rest[..batch]) {
                Ok(0) => {
                    let err = io::Error::new(io::ErrorKind::WriteZero, "writev wrote nothing");
                    return Err(FsError::from_io(OpKind::Append, &self.path, err));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FsError::from_io(OpKind::Append, &self.path, e)),
            };
            IoSlice::advance_slices(&mut rest, written);
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            FsError::from_io(OpKind::ReadAt, &self.path, e)
                .with_detail(format!("offset {offset}, {} bytes", buf.len()))
        })
    }

    fn len(&self) -> Result<u64> {
        self.file.metadata().map(|m| m.len()).map_err(|e| FsError::from_io(OpKind::Len, &self.path, e))
    }

    fn sync_data(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| FsError::from_io(OpKind::SyncData, &self.path, e))
    }

    fn as_os_file(&self) -> Option<&fs::File> {
        Some(&self.file)
    }

    fn truncate(&self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(|e| {
            FsError::from_io(OpKind::Truncate, &self.path, e).with_detail(format!("to {len} bytes"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_append_read_truncate_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs::new();
        let path = dir.path().join("a");
        let f = fs.create(&path).unwrap();
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        f.append_vectored(&[b"", b"!", b"??"]).unwrap();
        f.sync_data().unwrap();
        let mut buf = [0u8; 5];
        f.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert_eq!(f.len().unwrap(), 14);
        let mut tail = [0u8; 3];
        f.read_at(11, &mut tail).unwrap();
        assert_eq!(&tail, b"!??");
        f.truncate(5).unwrap();
        let err = f.read_at(3, &mut buf).unwrap_err();
        assert_eq!(err.kind, FsErrorKind::UnexpectedEof);
        assert_eq!(fs.create(&path).unwrap_err().kind, FsErrorKind::AlreadyExists);
        assert_eq!(fs.open(&dir.path().join("missing")).unwrap_err().kind, FsErrorKind::NotFound);
    }

    #[test]
    fn rename_list_remove_and_sync_dir() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs::new();
        fs.create(&dir.path().join("b.tmp")).unwrap();
        fs.rename(&dir.path().join("b.tmp"), &dir.path().join("b")).unwrap();
        fs.create_dir(&dir.path().join("sub/deeper")).unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert_eq!(fs.list(dir.path()).unwrap(), vec!["b".to_string(), "sub".to_string()]);
        fs.remove(&dir.path().join("b")).unwrap();
        assert_eq!(fs.list(dir.path()).unwrap(), vec!["sub".to_string()]);
    }

    /// Not a test of its own: the body of the child process of
    /// `lock_held_by_another_process_is_refused`, which runs this test binary filtered to
    /// this name with `STRATA_LOCK_CHILD` set to the lock path.
    #[test]
    fn lock_holder_child() {
        let Some(path) = std::env::var_os("STRATA_LOCK_CHILD") else { return };
        let _guard = OsFs::new().lock(Path::new(&path)).unwrap();
        println!("locked");
        std::thread::sleep(std::time::Duration::from_secs(30));
    }

    #[test]
    fn lock_held_by_another_process_is_refused() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "os::tests::lock_holder_child", "--nocapture", "--test-threads=1"])
            .env("STRATA_LOCK_CHILD", &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let locked =
            std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()).any(|line| line.contains("locked"));
        assert!(locked, "the child process never took the lock");
        let err = OsFs::new().lock(&path).unwrap_err();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(err.kind, FsErrorKind::Locked, "{err}");
        // The kernel releases the lock of a dead process.
        OsFs::new().lock(&path).unwrap();
    }

    #[test]
    fn second_lock_fails_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs::new();
        let path = dir.path().join("LOCK");
        let guard = fs.lock(&path).unwrap();
        let err = fs.lock(&path).unwrap_err();
        assert_eq!(err.kind, FsErrorKind::Locked);
        assert!(err.to_string().contains("LOCK"), "{err}");
        drop(guard);
        fs.lock(&path).unwrap();
    }
}
