//! Inputs and outputs in S3-compatible object storage (`s3://bucket/key`).
//!
//! forja's readers and writers work on local files, so object storage is
//! met at two edges: an input object is downloaded (streamed to a
//! temporary name, then renamed) into a cache folder just before its unit
//! is read, and removed after; a finished run's output files are uploaded
//! (multipart above [`MULTIPART_BYTES`]) and `run-manifest.json` goes last,
//! so a reader that finds it finds every file it lists. Every request is
//! retried with exponential backoff on throttling and server errors
//! (object_store's retry: 100 ms doubling to 15 s, for up to 3 minutes).
//!
//! Credentials and the endpoint come from the usual variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true` for a plain
//! HTTP endpoint such as a local test server).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

/// Files at least this large are uploaded in parts of this size, unless
/// `FORJA_S3_PART_MB` says otherwise (at least 5, S3's smallest part).
pub const MULTIPART_BYTES: usize = 16 << 20;

fn part_bytes() -> usize {
    std::env::var("FORJA_S3_PART_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(MULTIPART_BYTES, |mb| mb.max(5) << 20)
}

#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct RemoteError {
    pub url: String,
    pub message: String,
}

fn err(url: &str, message: impl std::fmt::Display) -> RemoteError {
    RemoteError {
        url: url.to_string(),
        message: message.to_string(),
    }
}

/// Bucket and key of `s3://bucket/key`.
pub fn split(url: &str) -> Result<(&str, &str), RemoteError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| err(url, "not an s3:// URL"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(err(url, "no bucket name"));
    }
    Ok((bucket, key))
}

fn store(url: &str) -> Result<Arc<dyn ObjectStore>, RemoteError> {
    let (bucket, _) = split(url)?;
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        });
    // The variable most tools (aws-cli, boto3) read for a custom endpoint.
    if let Ok(e) = std::env::var("AWS_ENDPOINT_URL") {
        b = b.with_endpoint(e);
    }
    Ok(Arc::new(b.build().map_err(|e| err(url, e))?))
}

/// A small runtime per call: forja's threads are rayon's, not async tasks.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(f)
}

/// The objects a glob pattern names (`s3://b/crawl/*/part-*.jsonl.zst`),
/// sorted, with their sizes.
pub fn list(pattern: &str) -> Result<Vec<(String, u64)>, RemoteError> {
    let (bucket, key) = split(pattern)?;
    let glob_at = key.find(['*', '?', '[']).unwrap_or(key.len());
    let prefix = &key[..key[..glob_at].rfind('/').map_or(0, |i| i + 1)];
    let matcher = glob::Pattern::new(key).map_err(|e| err(pattern, e))?;
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let s = store(pattern)?;
    let found: Vec<(String, u64)> = block_on(async {
        let p = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.trim_end_matches('/')));
        let mut stream = s.list(p.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| err(pattern, e))?;
            let k = meta.location.to_string();
            if matcher.matches_with(&k, opts) {
                out.push((format!("s3://{bucket}/{k}"), meta.size));
            }
        }
        Ok::<_, RemoteError>(out)
    })?;
    let mut found = found;
    found.sort();
    Ok(found)
}

/// Size and ETag of an object.
pub fn head(url: &str) -> Result<(u64, String), RemoteError> {
    let (_, key) = split(url)?;
    let s = store(url)?;
    let meta = block_on(s.head(&ObjectPath::from(key))).map_err(|e| err(url, e))?;
    Ok((meta.size, meta.e_tag.unwrap_or_default()))
}

/// Streams an object into `dest` (through a temporary name); returns its size.
pub fn download(url: &str, dest: &Path) -> Result<u64, RemoteError> {
    let (_, key) = split(url)?;
    let s = store(url)?;
    let tmp = crate::files::tmp_path(dest);
    let local = |e: std::io::Error| err(url, format!("writing {}: {e}", tmp.display()));
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d).map_err(local)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(local)?);
    let n = block_on(async {
        let got = s
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| err(url, e))?;
        let mut stream = got.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| err(url, e))?;
            f.write_all(&chunk).map_err(local)?;
            n += chunk.len() as u64;
        }
        Ok::<_, RemoteError>(n)
    })?;
    f.into_inner()
        .map_err(|e| local(e.into_error()))?
        .sync_all()
        .map_err(local)?;
    std::fs::rename(&tmp, dest).map_err(local)?;
    Ok(n)
}

/// Uploads a local file to `url`: one request below the part size
/// ([`MULTIPART_BYTES`]), else a multipart upload of parts that size
/// (aborted, not left half-done, on failure).
async fn upload_to(s: &dyn ObjectStore, src: &Path, url: &str) -> Result<(), RemoteError> {
    let (_, key) = split(url)?;
    let local = |e: std::io::Error| err(url, format!("reading {}: {e}", src.display()));
    let size = std::fs::metadata(src).map_err(local)?.len();
    let location = ObjectPath::from(key);
    let part = part_bytes();
    if size < part as u64 {
        let bytes = std::fs::read(src).map_err(local)?;
        return s
            .put(&location, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| err(url, e));
    }
    let mut f = std::fs::File::open(src).map_err(local)?;
    let upload = s.put_multipart(&location).await.map_err(|e| err(url, e))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, part);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        // At most a few parts in flight: memory stays bounded.
        if let Err(e) = w.wait_for_capacity(4).await {
            let _ = w.abort().await;
            return Err(err(url, e));
        }
        let k = match std::io::Read::read(&mut f, &mut buf) {
            Ok(k) => k,
            Err(e) => {
                let _ = w.abort().await;
                return Err(local(e));
            }
        };
        if k == 0 {
            break;
        }
        w.write(&buf[..k]);
    }
    w.finish().await.map(|_| ()).map_err(|e| err(url, e))
}

/// Uploads a finished output folder's files (`files`: paths relative to
/// `root`, with their xxh3 as the run manifest lists them) under `url`,
/// then `last` (the run manifest), so that a reader who finds it finds
/// everything it lists. What was uploaded is noted in
/// `root/_forja/published/`, so a publication that was cut off resumes
/// where it stopped and an unchanged file is not sent twice. Returns the
/// number of files uploaded.
pub fn publish(
    root: &Path,
    url: &str,
    files: &[(String, String)],
    last: &str,
) -> Result<usize, RemoteError> {
    // One client (and its connections) for the whole folder.
    let s = store(url)?;
    let base = url.trim_end_matches('/');
    let notes = root.join(crate::files::FORJA_DIR).join("published");
    block_on(async {
        let mut sent = 0;
        for (rel, xxh3) in files {
            let note = notes.join(format!("{}.xxh3", rel.replace('/', "%2F")));
            if std::fs::read_to_string(&note).is_ok_and(|n| n == *xxh3) {
                continue;
            }
            upload_to(s.as_ref(), &root.join(rel), &format!("{base}/{rel}")).await?;
            crate::files::atomic_write(&note, xxh3.as_bytes())
                .map_err(|e| err(url, format!("writing {}: {e}", note.display())))?;
            sent += 1;
        }
        upload_to(s.as_ref(), &root.join(last), &format!("{base}/{last}")).await?;
        Ok(sent + 1)
    })
}

/// Where an input object is cached while its unit is read:
/// `$TMPDIR/forja-cache-<pid>/<hash of the URL>-<its file name>`, so
/// two objects with one name do not meet.
pub fn cache_path(url: &str) -> PathBuf {
    let name = url.rsplit('/').next().unwrap_or("object");
    std::env::temp_dir()
        .join(format!("forja-cache-{}", std::process::id()))
        .join(format!(
            "{:016x}-{name}",
            xxhash_rust::xxh3::xxh3_64(url.as_bytes())
        ))
}

/// Downloaded copies of a unit's input objects, removed when dropped.
#[derive(Debug, Default)]
pub struct Cached(Vec<PathBuf>);

impl Cached {
    pub fn push(&mut self, p: PathBuf) {
        self.0.push(p);
    }
}

impl Drop for Cached {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(split("s3://b/a/c.jsonl").unwrap(), ("b", "a/c.jsonl"));
        assert_eq!(split("s3://b").unwrap(), ("b", ""));
        assert!(split("s3:///k").is_err());
        assert!(split("gs://b/k").is_err());
        let a = cache_path("s3://b/x/part-0.jsonl.zst");
        let b = cache_path("s3://b/y/part-0.jsonl.zst");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().ends_with("-part-0.jsonl.zst"));
    }
}
