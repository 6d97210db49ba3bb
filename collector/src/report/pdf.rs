//! The PDF report, typeset with krilla (the PDF library typst itself writes its PDFs with): text
//! is shaped by rustybuzz and embedded as subsetted DejaVu Sans (the font files are compiled into
//! the collector: no file or network access at run time). The layout is done here: paragraphs are
//! broken into lines by measured glyph advances (skrifa), tables get column widths from their
//! content and repeat their header on every page, charts are drawn as vector paths.
//!
//! The sections are the HTML report's, in the same order, from the same [`Report`] and tables.
//! Endpoint strings are drawn as glyphs of their characters: there is no markup to inject into,
//! and control characters are shown as U+FFFD.

use std::sync::{Arc, OnceLock};

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use skrifa::MetadataProvider as _;
use skrifa::instance::{LocationRef, Size};

use super::ReportError;
use super::data::{Report, Series, change_text};
use super::html::week_labels;
use super::tables::Table;

/// DejaVu Sans 2.37 (Bitstream Vera licence, free; docs/REPORTS.md), from Debian's
/// fonts-dejavu-core.
static REGULAR: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("fonts/DejaVuSans-Bold.ttf");

/// A4 in PDF points, and the margins.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 45.0;
const MARGIN_TOP: f32 = 50.0;
const MARGIN_BOTTOM: f32 = 55.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN_X;

type Color = (u8, u8, u8);
const BLACK: Color = (0, 0, 0);
const GREY: Color = (90, 90, 90);
const RULE: Color = (170, 170, 170);
const PALETTE: [Color; 8] = [
    (0x1f, 0x77, 0xb4),
    (0xd6, 0x27, 0x28),
    (0x2c, 0xa0, 0x2c),
    (0xff, 0x7f, 0x0e),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x17, 0xbe, 0xcf),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
}

/// A font for krilla and its metrics for measuring.
struct Loaded {
    font: Font,
    metrics: skrifa::FontRef<'static>,
    units_per_em: f32,
}

struct Fonts {
    regular: Loaded,
    bold: Loaded,
}

fn load(data: &'static [u8]) -> Option<Loaded> {
    let shared: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(data);
    let font = Font::new(shared.into(), 0)?;
    let metrics = skrifa::FontRef::new(data).ok()?;
    let units_per_em = f32::from(
        metrics
            .metrics(Size::unscaled(), LocationRef::default())
            .units_per_em,
    );
    Some(Loaded {
        font,
        metrics,
        units_per_em,
    })
}

/// The embedded fonts, parsed once per process.
fn fonts() -> Result<&'static Fonts, ReportError> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            Some(Fonts {
                regular: load(REGULAR)?,
                bold: load(BOLD)?,
            })
        })
        .as_ref()
        .ok_or_else(|| ReportError::Pdf("the embedded fonts cannot be read".into()))
}

impl Fonts {
    fn get(&self, face: Face) -> &Loaded {
        match face {
            Face::Regular => &self.regular,
            Face::Bold => &self.bold,
        }
    }

    /// The advance width of `text` at `size` points (no kerning: at most a little wider than
    /// the shaped text, so a line that fits here fits on the page).
    fn width(&self, face: Face, size: f32, text: &str) -> f32 {
        let loaded = self.get(face);
        let charmap = loaded.metrics.charmap();
        let metrics = loaded
            .metrics
            .glyph_metrics(Size::unscaled(), LocationRef::default());
        let units: f32 = text
            .chars()
            .map(|c| {
                charmap
                    .map(c)
                    .or_else(|| charmap.map('\u{FFFD}'))
                    .and_then(|glyph| metrics.advance_width(glyph))
                    .unwrap_or(loaded.units_per_em * 0.6)
            })
            .sum();
        units * size / loaded.units_per_em
    }
}

/// Text as it may be drawn: control characters (tabs, line breaks, escapes) become U+FFFD.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

enum Item {
    Text {
        x: f32,
        y: f32,
        face: Face,
        size: f32,
        color: Color,
        text: String,
    },
    Line {
        points: Vec<(f32, f32)>,
        width: f32,
        color: Color,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Color>,
        stroke: Option<Color>,
    },
}

/// Pages of positioned items, and where the next block goes.
struct Layout {
    fonts: &'static Fonts,
    pages: Vec<Vec<Item>>,
    y: f32,
}

impl Layout {
    fn new(fonts: &'static Fonts) -> Layout {
        Layout {
            fonts,
            pages: vec![Vec::new()],
            y: MARGIN_TOP,
        }
    }

    fn push(&mut self, item: Item) {
        if let Some(page) = self.pages.last_mut() {
            page.push(item);
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN_TOP;
    }

    /// Starts a new page unless `height` fits below the cursor.
    fn ensure(&mut self, height: f32) {
        if self.y + height > PAGE_H - MARGIN_BOTTOM && self.y > MARGIN_TOP {
            self.new_page();
        }
    }

    fn text(&mut self, x: f32, baseline: f32, face: Face, size: f32, color: Color, text: String) {
        self.push(Item::Text {
            x,
            y: baseline,
            face,
            size,
            color,
            text,
        });
    }

    /// Breaks `text` into lines of at most `width`: at spaces, and inside a word only when the
    /// word alone is wider than a line (long host names, hashes, URLs).
    fn wrap(&self, text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
        let text = printable(text);
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split(' ') {
                let candidate = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!("{line} {word}")
                };
                if self.fonts.width(face, size, &candidate) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // the word on its own line, cut where it must be
                for c in word.chars() {
                    let mut longer = line.clone();
                    longer.push(c);
                    if !line.is_empty() && self.fonts.width(face, size, &longer) > width {
                        lines.push(std::mem::take(&mut line));
                        line.push(c);
                    } else {
                        line = longer;
                    }
                }
            }
            lines.push(line);
        }
        lines
    }

    /// A paragraph across the text width (or from `indent`), breaking pages between lines.
    fn paragraph(&mut self, text: &str, face: Face, size: f32, color: Color, indent: f32) {
        let leading = size * 1.35;
        for line in self.wrap(text, face, size, TEXT_W - indent) {
            self.ensure(leading);
            self.y += leading;
            self.text(
                MARGIN_X + indent,
                self.y - size * 0.3,
                face,
                size,
                color,
                line,
            );
        }
        self.y += size * 0.5;
    }

    fn heading(&mut self, title: &str) {
        // keep a heading with the start of what follows
        self.ensure(60.0);
        self.y += 14.0;
        self.y += 14.0;
        self.text(MARGIN_X, self.y, Face::Bold, 13.0, BLACK, printable(title));
        self.y += 5.0;
        self.push(Item::Line {
            points: vec![(MARGIN_X, self.y), (MARGIN_X + TEXT_W, self.y)],
            width: 0.5,
            color: RULE,
        });
        self.y += 4.0;
    }

    /// The three headline figures in boxes.
    fn cards(&mut self, cards: &[(&str, String, String)]) {
        let gap = 10.0;
        let w = (TEXT_W - gap * (cards.len() as f32 - 1.0)) / cards.len() as f32;
        let h = 64.0;
        self.ensure(h + 8.0);
        let top = self.y + 4.0;
        for (index, (label, value, change)) in cards.iter().enumerate() {
            let x = MARGIN_X + index as f32 * (w + gap);
            self.push(Item::Rect {
                x,
                y: top,
                w,
                h,
                fill: None,
                stroke: Some(RULE),
            });
            self.text(
                x + 8.0,
                top + 15.0,
                Face::Regular,
                9.0,
                BLACK,
                (*label).into(),
            );
            self.text(x + 8.0, top + 40.0, Face::Bold, 20.0, BLACK, value.clone());
            self.text(
                x + 8.0,
                top + 55.0,
                Face::Regular,
                8.0,
                GREY,
                change.clone(),
            );
        }
        self.y = top + h + 8.0;
    }

    /// A line chart of weekly host counts with a legend on the right.
    fn chart(&mut self, title: &str, labels: &[String], series: &[Series]) {
        let plot_w = 330.0;
        let plot_h = 110.0;
        let left = MARGIN_X + 28.0;
        self.ensure(plot_h + 45.0);
        self.y += 12.0;
        self.text(MARGIN_X, self.y, Face::Bold, 9.0, BLACK, title.into());
        let top = self.y + 8.0;
        let bottom = top + plot_h;
        let max = series
            .iter()
            .flat_map(|s| s.hosts.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        self.push(Item::Line {
            points: vec![(left, top), (left, bottom), (left + plot_w, bottom)],
            width: 0.5,
            color: RULE,
        });
        for value in [0, max / 2, max] {
            let y = bottom - plot_h * value as f32 / max as f32;
            let label = value.to_string();
            let x = left - 4.0 - self.fonts.width(Face::Regular, 7.0, &label);
            self.text(x, y + 2.5, Face::Regular, 7.0, GREY, label);
        }
        let steps = labels.len().saturating_sub(1).max(1) as f32;
        let x_at = |i: usize| left + plot_w * i as f32 / steps;
        let every = labels.len().div_ceil(6).max(1);
        for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
            let x = x_at(i) - self.fonts.width(Face::Regular, 6.5, label) / 2.0;
            self.text(x, bottom + 10.0, Face::Regular, 6.5, GREY, label.clone());
        }
        for (index, s) in series.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            let mut points: Vec<(f32, f32)> = s
                .hosts
                .iter()
                .enumerate()
                .map(|(i, v)| (x_at(i), bottom - plot_h * *v as f32 / max as f32))
                .collect();
            if points.len() == 1 {
                points.push((left + plot_w, points[0].1));
            }
            self.push(Item::Line {
                points,
                width: 1.4,
                color,
            });
            // legend
            let ly = top + 4.0 + index as f32 * 11.0;
            let lx = left + plot_w + 14.0;
            self.push(Item::Rect {
                x: lx,
                y: ly,
                w: 7.0,
                h: 7.0,
                fill: Some(color),
                stroke: None,
            });
            let name = self
                .wrap(&s.name, Face::Regular, 7.5, PAGE_W - MARGIN_X - lx - 12.0)
                .into_iter()
                .next()
                .unwrap_or_default();
            self.text(lx + 11.0, ly + 6.5, Face::Regular, 7.5, BLACK, name);
        }
        if series.is_empty() {
            let x = left + plot_w + 14.0;
            self.text(
                x,
                top + 10.0,
                Face::Regular,
                8.0,
                GREY,
                "no unsanctioned AI use in the period".into(),
            );
        }
        self.y = bottom + 18.0;
    }

    /// A table: column widths from the content, cells wrapped, the header repeated on every page.
    fn table(&mut self, table: &Table) {
        let size = 7.0;
        let pad = 3.0;
        let leading = size * 1.3;
        let columns = table.header.len().max(1);
        // natural widths, capped so that one long cell does not take the page
        let mut natural = vec![0.0f32; columns];
        for (c, title) in table.header.iter().enumerate() {
            natural[c] = self.fonts.width(Face::Bold, size, title);
        }
        for row in &table.rows {
            for (c, cell) in row.iter().enumerate().take(columns) {
                let w = self.fonts.width(Face::Regular, size, &printable(cell));
                natural[c] = natural[c].max(w.min(220.0));
            }
        }
        let available = TEXT_W - 2.0 * pad * columns as f32;
        let total: f32 = natural.iter().sum();
        let widths: Vec<f32> = if total <= available {
            natural.iter().map(|w| w + 2.0 * pad).collect()
        } else {
            // everyone gets a fair minimum, the rest in proportion to the natural width
            let minimum = (available / columns as f32).min(36.0);
            let spare = available - minimum * columns as f32;
            let over: f32 = natural.iter().map(|w| (w - minimum).max(0.0)).sum();
            natural
                .iter()
                .map(|w| minimum + spare * (w - minimum).max(0.0) / over.max(1.0) + 2.0 * pad)
                .collect()
        };
        let cells = |layout: &Layout, row: &[String], face: Face| -> Vec<Vec<String>> {
            widths
                .iter()
                .enumerate()
                .map(|(c, w)| {
                    let text = row.get(c).map(String::as_str).unwrap_or("");
                    layout.wrap(text, face, size, w - 2.0 * pad)
                })
                .collect()
        };
        let header: Vec<String> = table.header.iter().map(|h| (*h).to_owned()).collect();
        let header_cells = cells(self, &header, Face::Bold);
        let height = |cells: &[Vec<String>]| {
            cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * leading + 2.0 * pad
        };
        let header_h = height(&header_cells);
        let draw_row = |layout: &mut Layout, cells: &[Vec<String>], face: Face, h: f32| {
            let mut x = MARGIN_X;
            for (c, lines) in cells.iter().enumerate() {
                layout.push(Item::Rect {
                    x,
                    y: layout.y,
                    w: widths[c],
                    h,
                    fill: (face == Face::Bold).then_some((238, 238, 238)),
                    stroke: Some((180, 180, 180)),
                });
                for (n, line) in lines.iter().enumerate() {
                    let baseline = layout.y + pad + (n as f32 + 1.0) * leading - size * 0.3;
                    layout.text(x + pad, baseline, face, size, BLACK, line.clone());
                }
                x += widths[c];
            }
            layout.y += h;
        };
        self.ensure(header_h * 2.0);
        draw_row(self, &header_cells, Face::Bold, header_h);
        for row in &table.rows {
            let row_cells = cells(self, row, Face::Regular);
            let h = height(&row_cells);
            if self.y + h > PAGE_H - MARGIN_BOTTOM {
                self.new_page();
                draw_row(self, &header_cells, Face::Bold, header_h);
            }
            draw_row(self, &row_cells, Face::Regular, h);
        }
        self.y += 6.0;
    }
}

/// Typesets the report.
pub fn render(report: &Report, tables: &[Table]) -> Result<Vec<u8>, ReportError> {
    let fonts = fonts()?;
    let mut layout = Layout::new(fonts);
    layout.y += 20.0;
    layout.text(
        MARGIN_X,
        layout.y,
        Face::Bold,
        20.0,
        BLACK,
        "Shadow AI evidence report".into(),
    );
    layout.y += 6.0;
    let period = &report.period;
    let mut line = format!(
        "Period {} to {} ({} days)",
        period.since, period.until, period.days
    );
    if let Some(group) = &report.group {
        line.push_str(&format!(", group {group}"));
    }
    line.push_str(&format!(". Generated {}", report.generated_at));
    if report.pseudonymized {
        line.push_str("; users and hosts are pseudonymised");
    }
    line.push('.');
    layout.paragraph(&line, Face::Regular, 10.0, BLACK, 0.0);

    let scope = &report.scope;
    layout.heading("Scope and confidence");
    layout.paragraph(
        &format!(
            "{} of {} expected hosts reported in the period; {} are silent and {} are blinded \
             (DoH, ECH or capture off). Sanctioned-product policy: {}.",
            scope.hosts_reporting,
            scope.hosts_expected,
            scope.hosts_silent,
            scope.hosts_blinded,
            scope.sanctioned_policy
        ),
        Face::Regular,
        10.0,
        BLACK,
        0.0,
    );

    let summary = &report.summary;
    layout.heading("Summary");
    layout.cards(&[
        (
            "Hosts with unsanctioned AI",
            summary.hosts_with_unsanctioned_ai.value.to_string(),
            format!(
                "{} vs previous period",
                change_text(&summary.hosts_with_unsanctioned_ai)
            ),
        ),
        (
            "Users with unsanctioned AI",
            summary.users_with_unsanctioned_ai.value.to_string(),
            format!(
                "{} vs previous period",
                change_text(&summary.users_with_unsanctioned_ai)
            ),
        ),
        (
            "Share of the fleet",
            format!("{}%", summary.fleet_share_percent),
            format!("previously {}%", summary.previous_fleet_share_percent),
        ),
    ]);

    let labels = week_labels(report);
    layout.heading("Trends");
    layout.chart(
        "Hosts per week, by category",
        &labels,
        &report.trends.by_category,
    );
    layout.chart(
        "Hosts per week, top products",
        &labels,
        &report.trends.top_products,
    );

    layout.heading("Recommendations");
    if report.recommendations.is_empty() {
        layout.paragraph(
            "No rule fired for this period.",
            Face::Regular,
            10.0,
            GREY,
            0.0,
        );
    }
    for recommendation in &report.recommendations {
        let top = layout.y;
        layout.paragraph(&recommendation.title, Face::Bold, 10.0, BLACK, 10.0);
        layout.y -= 5.0;
        layout.paragraph(recommendation.rule, Face::Regular, 8.0, GREY, 10.0);
        layout.paragraph(&recommendation.text, Face::Regular, 9.5, BLACK, 10.0);
        // the bar beside it, on the page where it ends
        let bar_top = if layout.y > top {
            top + 4.0
        } else {
            MARGIN_TOP
        };
        let bar_bottom = layout.y - 4.0;
        layout.push(Item::Line {
            points: vec![(MARGIN_X + 2.0, bar_top), (MARGIN_X + 2.0, bar_bottom)],
            width: 2.5,
            color: PALETTE[0],
        });
        layout.y += 4.0;
    }

    for table in tables {
        layout.heading(table.title);
        if table.rows.is_empty() {
            layout.paragraph("None in this period.", Face::Regular, 9.5, GREY, 0.0);
        } else {
            layout.table(table);
        }
    }

    let integrity = &report.integrity;
    layout.heading("Integrity");
    match &integrity.chain_head {
        Some(head) => layout.paragraph(
            &format!("Evidence-chain head at generation time: {head}"),
            Face::Regular,
            10.0,
            BLACK,
            0.0,
        ),
        None => layout.paragraph(
            "Evidence-chain head: not available on this collector.",
            Face::Regular,
            10.0,
            BLACK,
            0.0,
        ),
    }
    layout.paragraph(
        &format!(
            "{}. Verify with {}. The evidence appendix lists {} of {} alerts of the period with \
             their first and last observation ids.",
            integrity.note,
            integrity.verify_command,
            report.evidence.alerts.len(),
            report.evidence.alerts_total
        ),
        Face::Regular,
        10.0,
        BLACK,
        0.0,
    );

    emit(layout, report)
}

fn fill(color: Color) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

fn stroke(color: Color, width: f32) -> Stroke {
    Stroke {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        width,
        ..Default::default()
    }
}

/// Writes the laid-out pages, with page numbers, as a PDF.
fn emit(layout: Layout, report: &Report) -> Result<Vec<u8>, ReportError> {
    let fonts = layout.fonts;
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(format!(
                "shadowai evidence report {} to {}",
                report.period.since, report.period.until
            ))
            .creator("shadowai".into()),
    );
    let count = layout.pages.len();
    for (number, items) in layout.pages.into_iter().enumerate() {
        let mut page = document.start_page_with(PageSettings::new(PAGE_W, PAGE_H));
        let mut surface = page.surface();
        for item in items {
            match item {
                Item::Text {
                    x,
                    y,
                    face,
                    size,
                    color,
                    text,
                } => {
                    if text.is_empty() {
                        continue;
                    }
                    surface.set_stroke(None);
                    surface.set_fill(Some(fill(color)));
                    surface.draw_text(
                        Point::from_xy(x, y),
                        fonts.get(face).font.clone(),
                        size,
                        &text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Item::Line {
                    points,
                    width,
                    color,
                } => {
                    let mut builder = PathBuilder::new();
                    for (index, (x, y)) in points.into_iter().enumerate() {
                        if index == 0 {
                            builder.move_to(x, y);
                        } else {
                            builder.line_to(x, y);
                        }
                    }
                    if let Some(path) = builder.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(stroke(color, width)));
                        surface.draw_path(&path);
                    }
                }
                Item::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill: inside,
                    stroke: edge,
                } => {
                    let mut builder = PathBuilder::new();
                    if let Some(rect) = Rect::from_xywh(x, y, w, h) {
                        builder.push_rect(rect);
                    }
                    if let Some(path) = builder.finish() {
                        surface.set_fill(inside.map(fill));
                        surface.set_stroke(edge.map(|c| stroke(c, 0.5)));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        let footer = format!("{} / {count}", number + 1);
        let x = (PAGE_W - fonts.width(Face::Regular, 8.0, &footer)) / 2.0;
        surface.set_stroke(None);
        surface.set_fill(Some(fill(GREY)));
        surface.draw_text(
            Point::from_xy(x, PAGE_H - 28.0),
            fonts.regular.font.clone(),
            8.0,
            &footer,
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| ReportError::Pdf(format!("{e:?}")))
}
