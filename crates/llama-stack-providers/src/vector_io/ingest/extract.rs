//! [`extract_text`]: plain text out of each [`DocumentFormat`], with errors that name the
//! file and what is wrong with it.

use llama_stack_core::{Error, Result};

use super::format::{detect_format, extension, DocumentFormat};
use super::html::html_text;
use super::pdf::pdf_text;

/// Extracted text of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The format the text was extracted from.
    pub format: DocumentFormat,
    /// The plain text: LF line ends, no byte-order mark, never blank.
    pub text: String,
}

/// Extracts plain text (detects the format first).
pub fn extract_text(filename: &str, content: &[u8]) -> Result<Document> {
    if content.is_empty() {
        return Err(invalid(filename, "is empty"));
    }
    let format = detect_format(filename, content)?;
    let text = match format {
        DocumentFormat::Text | DocumentFormat::Markdown => utf8(filename, content)?.to_owned(),
        DocumentFormat::Html => tidy(&html_text(filename, utf8(filename, content)?)?),
        DocumentFormat::Json if extension(filename).as_deref() == Some("json") => {
            json_text(filename, utf8(filename, content)?)?
        }
        DocumentFormat::Json => json_lines_text(filename, utf8(filename, content)?)?,
        DocumentFormat::Csv => {
            let tab = extension(filename).as_deref() == Some("tsv");
            csv_text(filename, utf8(filename, content)?, tab)?
        }
        DocumentFormat::Pdf => tidy(&pdf_text(filename, content)?),
    };
    let text = normalize_line_ends(text);
    if text.trim().is_empty() {
        let what = if format == DocumentFormat::Pdf {
            "contains no extractable text (a scanned PDF needs OCR first)"
        } else {
            "contains no text"
        };
        return Err(invalid(filename, what));
    }
    Ok(Document { format, text })
}

/// `InvalidRequest`: `file '<filename>' <what>`, with the file as context.
pub(super) fn invalid(filename: &str, what: &str) -> Error {
    Error::invalid_request(format!("file '{filename}' {what}")).with_context("file", filename)
}

/// The content as UTF-8 without a byte-order mark.
fn utf8<'a>(filename: &str, content: &'a [u8]) -> Result<&'a str> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    std::str::from_utf8(content).map_err(|e| {
        invalid(
            filename,
            &format!(
                "is not valid UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// CRLF and lone CR line ends become LF.
fn normalize_line_ends(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

/// Trailing spaces removed from every line, runs of blank lines collapsed to one, no
/// blank lines at either end.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = false;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank_run = !out.is_empty();
            continue;
        }
        if blank_run {
            out.push('\n');
            blank_run = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A JSON document, pretty-printed so that keys and values are searchable.
fn json_text(filename: &str, json: &str) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| invalid(filename, &format!("is not valid JSON: {e}")))?;
    pretty(filename, &value)
}

/// JSON Lines: one JSON value per non-blank line, each pretty-printed, separated by a
/// blank line.
fn json_lines_text(filename: &str, jsonl: &str) -> Result<String> {
    let mut out = String::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            invalid(
                filename,
                &format!("is not valid JSON Lines: line {}: {e}", i + 1),
            )
        })?;
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&pretty(filename, &value)?);
    }
    Ok(out)
}

/// `value` pretty-printed.
fn pretty(filename: &str, value: &serde_json::Value) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| Error::internal(format!("file '{filename}': cannot print JSON: {e}")))
}

/// CSV (or TSV when `tab`): one line per record, `header1: value1, header2: value2`.
fn csv_text(filename: &str, csv: &str, tab: bool) -> Result<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(if tab { b'\t' } else { b',' })
        .quoting(!tab)
        .has_headers(true)
        .flexible(false)
        .from_reader(csv.as_bytes());
    let not_csv = |e: csv::Error| {
        let at = e
            .position()
            .map(|p| format!("line {}: ", p.line()))
            .unwrap_or_default();
        let why = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            _ => e.to_string(),
        };
        let what = if tab { "TSV" } else { "CSV" };
        invalid(filename, &format!("is not valid {what}: {at}{why}"))
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(not_csv)?
        .iter()
        .enumerate()
        .map(|(i, h)| match h.trim() {
            "" => format!("column {}", i + 1),
            h => h.to_owned(),
        })
        .collect();
    let mut out = String::new();
    for record in reader.records() {
        let record = record.map_err(not_csv)?;
        for (i, (header, value)) in headers.iter().zip(record.iter()).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(header);
            out.push_str(": ");
            out.push_str(&value.replace(['\r', '\n'], " "));
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use llama_stack_core::ErrorKind;

    fn check(filename: &str, content: &str, format: DocumentFormat, text: &str) {
        let doc = extract_text(filename, content.as_bytes()).unwrap();
        assert_eq!(doc.format, format, "{filename}");
        assert_eq!(doc.text, text, "{filename}");
    }

    /// The error for `content`, checked to be `InvalidRequest` and to name the file and
    /// contain `says`.
    fn check_invalid(filename: &str, content: &[u8], says: &str) {
        let err = extract_text(filename, content).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{}", err.message());
        let msg = err.message();
        assert!(msg.contains(&format!("'{filename}'")), "{msg}");
        assert!(msg.contains(says), "{msg}");
    }

    #[test]
    fn text_and_markdown_are_kept_as_written() {
        check(
            "a.txt",
            "\u{feff}line one\r\nline two\rthree",
            DocumentFormat::Text,
            "line one\nline two\nthree",
        );
        check(
            "README.md",
            "# Title\n\n* item `code`\n",
            DocumentFormat::Markdown,
            "# Title\n\n* item `code`\n",
        );
        check("lib.rs", "fn f() {}\n", DocumentFormat::Text, "fn f() {}\n");
        check("noext", "just text", DocumentFormat::Text, "just text");
    }

    #[test]
    fn empty_and_blank_files_are_rejected() {
        check_invalid("empty.txt", b"", "is empty");
        check_invalid("blank.md", b" \n\t\r\n ", "contains no text");
        check_invalid("blank.html", b"<html><body>  </body></html>", "no text");
        check_invalid("blank.csv", b"a,b\n", "no text");
    }

    #[test]
    fn invalid_utf8_in_a_text_format_is_rejected() {
        check_invalid("latin1.txt", b"caf\xe9 au lait", "not valid UTF-8");
        check_invalid("page.html", b"<p>\xff\xfe</p>", "offset 3");
    }

    #[test]
    fn html_keeps_readable_text_and_drops_scripts_and_styles() {
        let html = r#"<!DOCTYPE html><html><head><title>T</title>
            <style>body { color: red }</style></head>
            <body><h1>Heading</h1><script>var secret = 1;</script>
            <p>First <b>bold</b> paragraph with a <a href="https://example.com/x">link</a>
            that is long enough that a narrow renderer would wrap it onto a second line.</p>
            <ul><li>one</li><li>two</li></ul>
            <table><tr><th>k</th><th>v</th></tr><tr><td>x</td><td>1</td></tr></table>
            </body></html>"#;
        let doc = extract_text("page.html", html.as_bytes()).unwrap();
        assert_eq!(doc.format, DocumentFormat::Html);
        for gone in ["<", "secret", "color", "body {"] {
            assert!(!doc.text.contains(gone), "{gone:?} in {:?}", doc.text);
        }
        assert!(doc.text.contains("Heading"), "{:?}", doc.text);
        assert!(
            doc.text.contains("First bold paragraph with a link that is long enough that a narrow renderer would wrap it onto a second line."),
            "{:?}",
            doc.text
        );
        assert!(doc.text.contains("one\ntwo"), "{:?}", doc.text);
        assert!(doc.text.contains("k v\nx 1"), "{:?}", doc.text);
    }

    #[test]
    fn json_is_pretty_printed() {
        check(
            "data.json",
            r#"{"name":"Ada","tags":["math",1]}"#,
            DocumentFormat::Json,
            "{\n  \"name\": \"Ada\",\n  \"tags\": [\n    \"math\",\n    1\n  ]\n}",
        );
        check(
            "rows.jsonl",
            "{\"a\":1}\n\n[true]\n",
            DocumentFormat::Json,
            "{\n  \"a\": 1\n}\n\n[\n  true\n]",
        );
    }

    #[test]
    fn invalid_json_names_the_file_and_the_place() {
        check_invalid("bad.json", br#"{"a": 1,"#, "is not valid JSON: EOF");
        check_invalid("bad.jsonl", b"{\"a\":1}\n{oops}\n", "line 2");
        let nested = "[".repeat(100_000);
        check_invalid("deep.json", nested.as_bytes(), "recursion limit");
    }

    #[test]
    fn csv_records_become_header_value_lines() {
        check(
            "people.csv",
            "name,age,note\r\nAda,36,\"wrote, \"\"notes\"\"\nand more\"\nAlan,41,\n",
            DocumentFormat::Csv,
            "name: Ada, age: 36, note: wrote, \"notes\" and more\nname: Alan, age: 41, note: \n",
        );
        check(
            "t.tsv",
            "a\t\tc\n1\t\"2\t3\n",
            DocumentFormat::Csv,
            "a: 1, column 2: \"2, c: 3\n",
        );
    }

    #[test]
    fn ragged_csv_names_the_line() {
        check_invalid("ragged.csv", b"a,b\n1,2\n3,4,5\n", "line 3: 3 fields");
        check_invalid("ragged.tsv", b"a\tb\n1\n", "is not valid TSV: line 2");
    }
}
