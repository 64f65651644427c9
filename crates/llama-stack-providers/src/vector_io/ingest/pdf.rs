//! PDF text extraction with pdf-extract, which can panic on malformed files: every call
//! runs under [`catch_quietly`].

use llama_stack_core::{Error, Result};

use super::guard::catch_quietly;

/// The text of every page of the PDF `content`, named `filename` in errors.
pub(super) fn pdf_text(filename: &str, content: &[u8]) -> Result<String> {
    let not_readable = |why: String| {
        Error::invalid_request(format!("file '{filename}' is not a readable PDF: {why}"))
            .with_context("file", filename)
    };
    match catch_quietly(|| pdf_extract::extract_text_from_mem(content)) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(not_readable(e.to_string())),
        Err(panic) => Err(not_readable(format!("the parser failed ({panic})"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{extract_text, DocumentFormat};
    use llama_stack_core::ErrorKind;
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, ObjectId, Stream};

    /// A PDF with one page per entry of `pages`, each showing its lines in Helvetica.
    fn pdf(pages: &[&[&str]]) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        });
        let resources_id = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut kids = Vec::new();
        for lines in pages {
            let mut operations = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let y = 700 - 20 * i as i64;
                operations.extend([
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("Td", vec![72.into(), y.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*line)]),
                    Operation::new("ET", vec![]),
                ]);
            }
            let content = Content { operations }.encode().unwrap();
            let content_id = doc.add_object(Stream::new(dictionary! {}, content));
            let page_id = doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
            });
            kids.push(Object::from(page_id));
        }
        let count = kids.len() as i64;
        let pages = dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        };
        doc.objects.insert(pages_id, Object::Dictionary(pages));
        finish(doc, pages_id)
    }

    /// Adds the catalog over `pages_id` and serializes `doc`.
    fn finish(mut doc: Document, pages_id: ObjectId) -> Vec<u8> {
        let catalog_id = doc.add_object(dictionary! {
            "Type" => "Catalog",
            "Pages" => pages_id,
        });
        doc.trailer.set("Root", catalog_id);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    fn check_unreadable(filename: &str, content: &[u8], says: &str) {
        let err = extract_text(filename, content).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{}", err.message());
        let msg = err.message();
        assert!(msg.starts_with(&format!("file '{filename}' ")), "{msg}");
        assert!(msg.contains(says), "{msg}");
    }

    #[test]
    fn text_of_every_page() {
        let bytes = pdf(&[
            &["Quarterly report", "Revenue grew by 12 percent."],
            &["Second page: outlook"],
        ]);
        let doc = extract_text("report.pdf", &bytes).unwrap();
        assert_eq!(doc.format, DocumentFormat::Pdf);
        for expected in [
            "Quarterly report",
            "Revenue grew by 12 percent.",
            "Second page: outlook",
        ] {
            assert!(
                doc.text.contains(expected),
                "{expected:?} in {:?}",
                doc.text
            );
        }
        // Detected by its magic bytes too.
        let doc = extract_text("upload", &bytes).unwrap();
        assert_eq!(doc.format, DocumentFormat::Pdf);
    }

    #[test]
    fn a_pdf_without_text_is_rejected() {
        check_unreadable("scan.pdf", &pdf(&[&[]]), "contains no extractable text");
    }

    #[test]
    fn corrupt_pdfs_are_errors_not_panics() {
        let good = pdf(&[&["Some text that will be cut off"]]);
        let half = &good[..good.len() / 2];
        check_unreadable("half.pdf", half, "is not a readable PDF");
        let mut garbage = b"%PDF-1.7\n".to_vec();
        garbage.extend((0..=255u8).cycle().take(10_000));
        check_unreadable("garbage.pdf", &garbage, "is not a readable PDF");
        check_unreadable("magic.pdf", b"%PDF-", "is not a readable PDF");
        check_unreadable(
            "text.pdf",
            b"plain text named .pdf",
            "is not a readable PDF",
        );
    }

    #[test]
    fn hostile_page_trees_are_errors_not_crashes() {
        // A page tree whose Kids point back at the tree itself.
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => vec![Object::from(pages_id)],
                "Count" => 1,
            }),
        );
        let bytes = finish(doc, pages_id);
        assert!(extract_text("cycle.pdf", &bytes).is_err());

        // A page whose font is a dangling reference.
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Tj", vec![Object::string_literal("x")]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => (999, 0) } },
        });
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => vec![Object::from(page_id)],
                "Count" => 1,
            }),
        );
        let bytes = finish(doc, pages_id);
        check_unreadable(
            "dangling.pdf",
            &bytes,
            "is not a readable PDF: the parser failed",
        );
    }

    #[test]
    fn damaged_copies_of_a_good_pdf_never_panic() {
        let good = pdf(&[&["Alpha beta gamma"], &["Delta epsilon"]]);
        for cut in (0..good.len()).step_by(23) {
            let _ = extract_text("cut.pdf", &good[..cut]);
        }
        // Deterministic byte flips (a linear congruential generator picks the places).
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300 {
            let mut damaged = good.clone();
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let at = (state >> 33) as usize % damaged.len();
                damaged[at] = (state >> 17) as u8;
            }
            if let Err(e) = extract_text("flipped.pdf", &damaged) {
                assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{}", e.message());
            }
        }
    }
}
