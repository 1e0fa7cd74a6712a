//! Writing SVG text: escaping and a few element helpers. Everything that comes from a
//! report (a VM name, a reason, a state) goes through [`escape`], so a name with `<` or
//! `&` stays text and the file stays well-formed XML.

use std::fmt::Write as _;

/// `text` made safe for XML character data and attribute values. Characters XML 1.0
/// forbids (control characters other than tab and newlines) become U+FFFD, so a
/// hand-edited report cannot make the file unreadable.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// A number for a coordinate: one decimal, no `-0.0`, never `NaN`.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 {
        "0".into()
    } else if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// An SVG document being written.
#[derive(Debug, Default)]
pub struct Svg {
    out: String,
}

impl Svg {
    /// Appends raw markup the caller built from escaped parts.
    pub fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
        self.out.push('\n');
    }

    /// A line from (x1, y1) to (x2, y2) with extra attributes.
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {attrs}/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    /// A text element; `text` is escaped here.
    pub fn text(&mut self, (x, y): (f64, f64), text: &str, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{}" y="{}" {attrs}>{}</text>"#,
            num(x),
            num(y),
            escape(text)
        );
    }

    /// A rectangle, with an optional tooltip (escaped here).
    pub fn rect(&mut self, (x, y): (f64, f64), (w, h): (f64, f64), attrs: &str, title: Option<&str>) {
        let _ = write!(
            self.out,
            r#"<rect x="{}" y="{}" width="{}" height="{}" {attrs}"#,
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0))
        );
        match title {
            Some(t) => {
                let _ = writeln!(self.out, "><title>{}</title></rect>", escape(t));
            }
            None => self.out.push_str("/>\n"),
        }
    }

    /// A polyline through `points`.
    pub fn polyline(&mut self, points: &[(f64, f64)], attrs: &str) {
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{},{}", num(*x), num(*y)))
            .collect();
        let _ = writeln!(
            self.out,
            r#"<polyline points="{}" fill="none" {attrs}/>"#,
            pts.join(" ")
        );
    }

    /// The markup written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_report_text_stays_text() {
        assert_eq!(
            escape(r#"<vm name="a&b">'x'"#),
            "&lt;vm name=&quot;a&amp;b&quot;&gt;&#39;x&#39;"
        );
    }

    #[test]
    fn characters_xml_forbids_become_replacement_characters() {
        assert_eq!(escape("a\u{0}b\u{1b}[31m\tc"), "a\u{fffd}b\u{fffd}[31m\tc");
    }

    #[test]
    fn coordinates_are_short_and_never_nan() {
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(-0.01), "0");
        assert_eq!(num(f64::NAN), "0");
    }
}
