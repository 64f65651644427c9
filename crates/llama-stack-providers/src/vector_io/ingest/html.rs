//! HTML to readable text with html2text, after a linear check of the element nesting
//! depth: the HTML5 tree builder walks its stack of open elements for every tag, so very
//! deep documents take quadratic time (40,000 nested `<div>`s: about ten seconds).

use std::collections::HashMap;

use llama_stack_core::Result;

use super::extract::invalid;
use super::guard::catch_quietly;

/// Columns the HTML renderer may use before wrapping: wide enough that paragraphs stay
/// on one line.
const HTML_WIDTH: usize = 100_000;

/// Deepest element nesting accepted. Browsers stop nesting at 512 levels, so pages that
/// render are well within it; deeper input is refused before the quadratic parse.
const MAX_DEPTH: usize = 1_024;

/// Readable text of an HTML page: no tags, markup decorations, table borders, scripts,
/// styles or `<head>`.
pub(super) fn html_text(filename: &str, html: &str) -> Result<String> {
    if nesting_exceeds(html, MAX_DEPTH) {
        return Err(invalid(
            filename,
            &format!("is not readable HTML: elements nest more than {MAX_DEPTH} levels deep"),
        ));
    }
    let render = || {
        html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
            .link_footnotes(false)
            .no_table_borders()
            .allow_width_overflow()
            .string_from_read(html.as_bytes(), HTML_WIDTH)
    };
    match catch_quietly(render) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(invalid(filename, &format!("is not readable HTML: {e}"))),
        Err(panic) => Err(invalid(filename, &format!("is not readable HTML: {panic}"))),
    }
}

/// Elements that never have content.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Elements whose start tag closes an open one of the same kind (or that the parser
/// opens once), so repeating them does not deepen the tree.
const FLAT: &[&str] = &[
    "html", "head", "body", "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "tbody",
    "thead", "tfoot", "colgroup", "caption", "rb", "rt", "rp", "rtc",
];

/// Elements whose content is raw text, skipped up to their end tag.
const RAW_TEXT: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
];

/// Whether the open elements of `html` ever nest deeper than `max`, by a linear scan of
/// its tags that mirrors the tree builder's stack: an end tag closes the innermost open
/// element of its name and everything inside it, or nothing when none is open.
fn nesting_exceeds(html: &str, max: usize) -> bool {
    let bytes = html.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    let mut i = 0;
    while let Some(lt) = find(bytes, i, b"<") {
        i = lt + 1;
        if bytes[i..].starts_with(b"!--") {
            i = find(bytes, i + 3, b"-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        let end_tag = bytes.get(i) == Some(&b'/');
        let name_start = if end_tag { i + 1 } else { i };
        if !bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let name_len = bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b':')
            .count();
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let Some(gt) = find(bytes, name_start + name_len, b">") else {
            break;
        };
        i = gt + 1;
        let self_closing = bytes[..gt].ends_with(b"/");
        let foreign =
            open.get("svg").is_some_and(|n| *n > 0) || open.get("math").is_some_and(|n| *n > 0);
        if end_tag {
            if open.get(&name).is_some_and(|n| *n > 0) {
                while let Some(top) = stack.pop() {
                    if let Some(n) = open.get_mut(&top) {
                        *n -= 1;
                    }
                    if top == name {
                        break;
                    }
                }
            }
        } else if RAW_TEXT.contains(&name.as_str()) && !foreign {
            i = find_end_tag(bytes, i, name.as_bytes()).unwrap_or(bytes.len());
        } else if !(VOID.contains(&name.as_str())
            || FLAT.contains(&name.as_str())
            || (foreign && self_closing))
        {
            *open.entry(name.clone()).or_default() += 1;
            stack.push(name);
            if stack.len() > max {
                return true;
            }
        }
    }
    false
}

/// Offset of the first `needle` in `bytes` at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Offset of the first `</name` (any case) in `bytes` at or after `from`.
fn find_end_tag(bytes: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut at = from;
    while let Some(p) = find(bytes, at, b"</") {
        let candidate = bytes.get(p + 2..p + 2 + name.len())?;
        if candidate.eq_ignore_ascii_case(name) {
            return Some(p);
        }
        at = p + 2;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{}deep{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn depth_follows_the_tree_builder() {
        assert!(!nesting_exceeds(&nested("<div>", "</div>", 1_000), 1_000));
        assert!(nesting_exceeds(&nested("<div>", "</div>", 1_001), 1_000));
        // Unclosed paragraphs and list items, void and self-closed SVG elements and
        // script text do not nest.
        let flat = "<p>a<li>b<br><img src=x>".repeat(5_000);
        assert!(!nesting_exceeds(&flat, 10));
        let svg = format!("<svg>{}</svg>", "<path d='M0'/><g></g>".repeat(5_000));
        assert!(!nesting_exceeds(&svg, 10));
        let script = format!("<script>{}</SCRIPT>", "<div>".repeat(100));
        assert!(!nesting_exceeds(&script, 10));
        assert!(!nesting_exceeds(&"<!-- <div> -->".repeat(100), 10));
        // An end tag of an element that is not open closes nothing.
        assert!(nesting_exceeds(&"<b></i>".repeat(100), 10));
        // Unclosed divs nest.
        assert!(nesting_exceeds(&"<div>x".repeat(100), 10));
    }

    #[test]
    fn deep_documents_are_refused_quickly() {
        let html = nested("<div>", "</div>", 200_000);
        let started = Instant::now();
        let err = html_text("deep.html", &html).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            err.message()
                .starts_with("file 'deep.html' is not readable HTML: elements nest"),
            "{}",
            err.message()
        );
        let text = html_text("ok.html", &nested("<div>", "</div>", MAX_DEPTH - 10)).unwrap();
        assert_eq!(text.trim(), "deep");
    }
}
