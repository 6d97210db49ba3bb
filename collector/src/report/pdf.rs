//! The PDF report, typeset by typst used as a library. The layout is `report.typ` (compiled into
//! the binary); the content is handed to it as one JSON file (`data.json`: the report, its tables,
//! pre-formatted changes and week labels), so endpoint strings are never parsed as typst markup.
//! Fonts are typst's own embedded ones (typst-assets): no file or network access at run time.

use std::sync::OnceLock;

use serde_json::json;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::layout::PagedDocument;
use typst::syntax::{FileId, Source, VirtualPath};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt as _, World};

use super::ReportError;
use super::data::{Report, change_text};
use super::html::week_labels;
use super::tables::Table;

const TEMPLATE: &str = include_str!("report.typ");

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

/// The embedded fonts, parsed once per process.
fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let fonts: Vec<Font> = typst_assets::fonts()
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        Fonts {
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
        }
    })
}

/// A typst world with two files: the template (main) and `data.json`.
struct ReportWorld {
    library: LazyHash<Library>,
    main: Source,
    data_id: FileId,
    data: Bytes,
    fonts: &'static Fonts,
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.fonts.book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotFound(id.vpath().as_rootless_path().into()))
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.data_id {
            Ok(self.data.clone())
        } else {
            Err(FileError::NotFound(id.vpath().as_rootless_path().into()))
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<i64>) -> Option<Datetime> {
        // The template never asks: a report's date is its period, passed in the data.
        None
    }
}

/// Typesets the report.
pub fn render(report: &Report, tables: &[Table]) -> Result<Vec<u8>, ReportError> {
    let data = json!({
        "report": report,
        "tables": tables.iter().map(|t| json!({
            "name": t.name,
            "title": t.title,
            "header": t.header,
            "rows": t.rows,
        })).collect::<Vec<_>>(),
        "hosts_change": change_text(&report.summary.hosts_with_unsanctioned_ai),
        "users_change": change_text(&report.summary.users_with_unsanctioned_ai),
        "week_labels": week_labels(report),
    });
    let data = serde_json::to_vec(&data).map_err(|e| ReportError::Pdf(e.to_string()))?;
    let main_id = FileId::new(None, VirtualPath::new("report.typ"));
    let world = ReportWorld {
        library: LazyHash::new(Library::default()),
        main: Source::new(main_id, TEMPLATE.to_owned()),
        data_id: FileId::new(None, VirtualPath::new("data.json")),
        data: Bytes::new(data),
        fonts: fonts(),
    };
    let document: PagedDocument = typst::compile(&world).output.map_err(|errors| {
        ReportError::Pdf(
            errors
                .iter()
                .map(|e| e.message.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    typst_pdf::pdf(&document, &typst_pdf::PdfOptions::default()).map_err(|errors| {
        ReportError::Pdf(
            errors
                .iter()
                .map(|e| e.message.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}
