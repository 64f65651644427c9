//! [`DocumentFormat`] and [`detect_format`]: the file name's extension first, then the
//! content's bytes (PDF magic, UTF-8 text).

use llama_stack_core::{Error, Result};

/// Document formats we extract text from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// Plain text, source code and configuration files.
    Text,
    /// Markdown, kept as written.
    Markdown,
    /// HTML, rendered to readable text.
    Html,
    /// JSON or JSON Lines, pretty-printed.
    Json,
    /// Comma- or tab-separated values, one `header: value` line per record.
    Csv,
    /// PDF, the text of every page.
    Pdf,
}

impl DocumentFormat {
    /// A short stable name: `text`, `markdown`, `html`, `json`, `csv` or `pdf`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Text => "text",
            DocumentFormat::Markdown => "markdown",
            DocumentFormat::Html => "html",
            DocumentFormat::Json => "json",
            DocumentFormat::Csv => "csv",
            DocumentFormat::Pdf => "pdf",
        }
    }

    /// The format a (lower-case) file extension names, if any.
    fn from_extension(ext: &str) -> Option<Self> {
        let format = match ext {
            "md" | "markdown" | "mdx" => DocumentFormat::Markdown,
            "html" | "htm" | "xhtml" => DocumentFormat::Html,
            "json" | "jsonl" | "ndjson" => DocumentFormat::Json,
            "csv" | "tsv" => DocumentFormat::Csv,
            "pdf" => DocumentFormat::Pdf,
            "txt" | "text" | "rst" | "log" | "adoc" | "org" | "tex" | "py" | "rs" | "js"
            | "mjs" | "cjs" | "ts" | "jsx" | "tsx" | "java" | "kt" | "scala" | "c" | "cc"
            | "cpp" | "cxx" | "h" | "hpp" | "cs" | "go" | "rb" | "php" | "swift" | "lua" | "pl"
            | "r" | "sql" | "sh" | "bash" | "zsh" | "ps1" | "bat" | "css" | "scss" | "yaml"
            | "yml" | "toml" | "xml" | "ini" | "cfg" | "conf" | "properties" | "env" => {
                DocumentFormat::Text
            }
            _ => return None,
        };
        Some(format)
    }
}

/// The lower-case extension of the last component of `filename`, if it has one.
pub(super) fn extension(filename: &str) -> Option<String> {
    std::path::Path::new(filename)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Where a PDF header may start: readers accept it within the first KiB.
const PDF_MAGIC_WINDOW: usize = 1024;

/// Whether `content` carries the `%PDF-` header near its start.
fn looks_like_pdf(content: &[u8]) -> bool {
    let head = &content[..content.len().min(PDF_MAGIC_WINDOW)];
    head.windows(5).any(|w| w == b"%PDF-")
}

/// Whether `content` is UTF-8 text (a NUL byte marks binary data even when it is valid UTF-8).
fn looks_like_text(content: &[u8]) -> bool {
    std::str::from_utf8(content).is_ok() && !content.contains(&0)
}

/// Detects the format from the file name's extension, falling back to sniffing the bytes
/// (`%PDF-` magic, valid UTF-8 text → Text). Binary content of no known format → Err
/// (kind Unsupported).
pub fn detect_format(filename: &str, content: &[u8]) -> Result<DocumentFormat> {
    if let Some(format) = extension(filename)
        .as_deref()
        .and_then(DocumentFormat::from_extension)
    {
        return Ok(format);
    }
    if looks_like_pdf(content) {
        return Ok(DocumentFormat::Pdf);
    }
    if looks_like_text(content) {
        return Ok(DocumentFormat::Text);
    }
    Err(Error::unsupported(format!(
        "file '{filename}' has an unsupported format: expected text, Markdown, HTML, JSON, CSV or PDF"
    ))
    .with_context("file", filename))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use llama_stack_core::ErrorKind;

    fn check(filename: &str, content: &[u8], expected: DocumentFormat) {
        assert_eq!(
            detect_format(filename, content).unwrap(),
            expected,
            "{filename}"
        );
    }

    #[test]
    fn extensions_pick_the_format_case_insensitively() {
        check("notes.txt", b"x", DocumentFormat::Text);
        check("dir/README.MD", b"# x", DocumentFormat::Markdown);
        check("page.htm", b"<p>x</p>", DocumentFormat::Html);
        check("data.jsonl", b"{}", DocumentFormat::Json);
        check("table.tsv", b"a\tb", DocumentFormat::Csv);
        check("Report.PDF", b"not really", DocumentFormat::Pdf);
        check("main.rs", b"fn main() {}", DocumentFormat::Text);
        check("config.yml", b"a: 1", DocumentFormat::Text);
    }

    #[test]
    fn unknown_extensions_sniff_the_content() {
        check("upload", b"%PDF-1.7\n...", DocumentFormat::Pdf);
        check("scan.bin", b"\r\n%PDF-1.4", DocumentFormat::Pdf);
        check("Makefile", b"all:\n\tcargo build\n", DocumentFormat::Text);
        check("notes.dat", "héllo 👋".as_bytes(), DocumentFormat::Text);
    }

    #[test]
    fn binary_content_of_no_known_format_is_unsupported() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let err = detect_format("blob.bin", &garbage).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("'blob.bin'"), "{}", err.message());
        let err = detect_format("zeros", &[0u8; 64]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<_> = [
            DocumentFormat::Text,
            DocumentFormat::Markdown,
            DocumentFormat::Html,
            DocumentFormat::Json,
            DocumentFormat::Csv,
            DocumentFormat::Pdf,
        ]
        .into_iter()
        .map(DocumentFormat::as_str)
        .collect();
        assert_eq!(names, ["text", "markdown", "html", "json", "csv", "pdf"]);
    }
}
