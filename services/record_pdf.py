"""The compliance record as an A4 PDF for auditors (fpdf2).

Text is set in DejaVu Sans, which matplotlib (a dependency already, for the digest chart)
ships: unlike fpdf2's core fonts it covers all of Unicode a name or a reason may hold. Hashes
are set in DejaVu Sans Mono, small enough that a SHA-256 fits on one line.

People are named `Display Name (U123)`, as Slack showed them when the record was made (the
record's `people`); request types by `services.labels`, the words Slack uses too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import matplotlib
from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, TableCellFillMode, XPos, YPos

from services.labels import TYPE_LABELS, system_label
from services.records import ComplianceRecord, Step

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SANS, MONO = "DejaVuSans", "DejaVuSansMono"

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (200, 205, 210)
SHADE = (241, 243, 245)
ACCENT = (31, 58, 96)
WARN = (156, 96, 0)

OUTCOME_LABELS = {"completed": "Completed", "rejected": "Rejected", "canceled": "Canceled"}
KIND_LABELS = {"name": "Name", "email": "Email", "phone": "Phone", "address": "Address",
               "external_id": "External id", "vendor_user_id": "Vendor user id", "text": "Search term"}


def clean(text: Any) -> str:
    """Printable text: control characters (other than newlines) dropped."""
    return "".join(ch for ch in str(text) if ch == "\n" or unicodedata.category(ch)[0] != "C")


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def at(moment: datetime | None, sep: str = " ") -> str:
    """A time in a table, whose heading says the times are UTC."""
    return moment.astimezone(UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S") if moment else "—"


def day(value: date | None) -> str:
    return value.isoformat() if value else "—"


def result_summary(step: Step, limit: int = 160) -> str:
    """A step's result in one short line: `key: value` pairs, nested values counted."""
    if step.error:
        return clean(step.error)[:limit]
    if not step.result:
        return "—"
    parts = []
    for key, value in sorted(step.result.items()):
        if isinstance(value, dict | list | tuple):
            value = f"{len(value)} item(s)"
        parts.append(f"{key}: {value}")
    text = clean(", ".join(parts))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Document(FPDF):
    def __init__(self, record: ComplianceRecord) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.record = record
        self.add_font(SANS, "", FONTS / "DejaVuSans.ttf")
        self.add_font(SANS, "B", FONTS / "DejaVuSans-Bold.ttf")
        self.add_font(SANS, "I", FONTS / "DejaVuSans-Oblique.ttf")
        self.add_font(MONO, "", FONTS / "DejaVuSansMono.ttf")
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(True, margin=20)
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(SANS, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(0, 4, f"Record of processing · {self.record.reference}", new_x=XPos.LMARGIN,
                  new_y=YPos.NEXT)
        self.ln(3)
        self.set_text_color(*INK)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1.5)
        self.set_font(SANS, "", 7.5)
        self.set_text_color(*MUTED)
        width = (self.w - self.l_margin - self.r_margin) / 2
        self.cell(width, 4, f"{self.record.reference} · generated {when(self.record.generated_at)} "
                  "by DSR Desk")
        self.cell(width, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(*INK)

    # Building blocks

    @property
    def content_width(self) -> float:
        return self.w - self.l_margin - self.r_margin

    def heading(self, text: str) -> None:
        if self.will_page_break(22):
            self.add_page()
        self.ln(4)
        self.set_font(SANS, "B", 10.5)
        self.set_text_color(*ACCENT)
        self.cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*ACCENT)
        self.set_line_width(0.35)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_line_width(0.2)
        self.set_draw_color(*RULE)
        self.set_text_color(*INK)
        self.ln(2)

    def paragraph(self, text: str, size: float = 8.5, style: str = "", color=INK) -> None:
        self.set_font(SANS, style, size)
        self.set_text_color(*color)
        self.multi_cell(0, size * 0.48, clean(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)

    def key_values(self, rows: list[tuple[str, str]], mono: Collection[str] = ()) -> None:
        self.set_font(SANS, "", 8.5)
        label_style = FontFace(family=SANS, emphasis="", size_pt=8.5, color=MUTED)
        mono_style = FontFace(family=MONO, size_pt=7.5)
        with self.table(col_widths=(48, self.content_width - 48), first_row_as_headings=False,
                        borders_layout=TableBordersLayout.HORIZONTAL_LINES, text_align="LEFT",
                        line_height=4.4, padding=(1.3, 2, 1.3, 2), width=self.content_width,
                        v_align="TOP") as table:
            for label, value in rows:
                row = table.row()
                row.cell(label, style=label_style)
                row.cell(clean(value), style=mono_style if label in mono else None)

    def grid(self, headings: tuple[str, ...], widths: tuple[float, ...],
             rows: list[tuple[str, ...]], mono_columns: tuple[int, ...] = (),
             size: float = 7.8, aligns: tuple[str, ...] | None = None) -> None:
        self.set_font(SANS, "", size)
        scale = self.content_width / sum(widths)
        heading_style = FontFace(family=SANS, emphasis="B", size_pt=size, color=INK, fill_color=SHADE)
        mono_style = FontFace(family=MONO, size_pt=size - 0.8)
        with self.table(col_widths=tuple(w * scale for w in widths), headings_style=heading_style,
                        borders_layout=TableBordersLayout.HORIZONTAL_LINES, text_align="LEFT",
                        line_height=size * 0.5, padding=(1.2, 1.6, 1.2, 1.6), width=self.content_width,
                        cell_fill_mode=TableCellFillMode.NONE, v_align="TOP",
                        repeat_headings=1) as table:
            head = table.row()
            for text in headings:
                head.cell(text)
            for values in rows:
                row = table.row()
                for index, text in enumerate(values):
                    row.cell(clean(text), style=mono_style if index in mono_columns else None,
                             align=aligns[index] if aligns else None)


def render_pdf(record: ComplianceRecord) -> bytes:
    """The record as an A4 PDF, page numbers and generation time in the footer."""
    pdf = _Document(record)
    pdf.set_title(f"Record of processing of a data subject request {record.reference}")
    pdf.set_author("DSR Desk")
    pdf.set_creator("DSR Desk")
    pdf.set_subject(f"{record.jurisdiction.code} {TYPE_LABELS.get(record.type, record.type)} "
                    f"request, {record.outcome}")
    pdf.set_creation_date(record.generated_at)
    pdf.add_page()
    _title(pdf, record)
    _summary(pdf, record)
    _subject(pdf, record)
    _decisions(pdf, record)
    _steps(pdf, record)
    _plan(pdf, record)
    _manifest(pdf, record)
    _trail(pdf, record)
    _anchor(pdf, record)
    return bytes(pdf.output())


def _title(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.set_font(SANS, "", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 4, "DSR Desk · Privacy team · Compliance record", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_text_color(*INK)
    pdf.set_font(SANS, "B", 16)
    pdf.multi_cell(0, 7.5, "Record of processing of a data subject request", align="L",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_font(SANS, "B", 12)
    pdf.set_text_color(*ACCENT)
    pdf.cell(pdf.get_string_width(record.reference) + 4, 6.5, record.reference)
    pdf.set_font(SANS, "", 10)
    pdf.set_text_color(*MUTED)
    mode = "SIMULATION: no real data was touched" if record.simulation else "Live request"
    pdf.cell(0, 6.5, f"{OUTCOME_LABELS.get(record.outcome, record.outcome)} · {mode}",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.ln(1)
    pdf.set_draw_color(*INK)
    pdf.set_line_width(0.5)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.set_line_width(0.2)
    pdf.set_draw_color(*RULE)
    pdf.ln(2)


def _summary(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("1. Summary")
    j = record.jurisdiction
    extension = "None"
    if record.extension:
        ext = record.extension
        by = f" by {record.who(ext.extended_by)}" if ext.extended_by else ""
        extension = (f"To {day(ext.due_on)} (extended {when(ext.extended_at)}{by}). "
                     f"Reason: {ext.reason or '—'}")
    timing = "within the deadline" if record.on_time else "AFTER the deadline"
    closed = f"{when(record.closed_at)} by {record.who(record.closed_by)} ({timing})"
    if record.close_reason:
        closed += f". Reason: {record.close_reason}"
    rows = [
        ("Request type", TYPE_LABELS.get(record.type, record.type)),
        ("Jurisdiction", f"{j.name} ({j.code})"),
        ("Legal basis", j.legal_basis),
        ("Received", when(record.received_at)),
    ]
    if record.ack_due_on or record.acknowledged_at:
        rows.append(("Acknowledgement", f"due {day(record.ack_due_on)}; given "
                                        f"{when(record.acknowledged_at)}"))
    rows += [
        ("Statutory deadline", day(record.due_on)),
        ("Extension", extension),
        ("Closed", closed),
        ("Outcome", OUTCOME_LABELS.get(record.outcome, record.outcome)),
        ("Mode", "Simulation: run against the built-in stand-ins of the vendors' APIs; no real "
                 "personal data was processed." if record.simulation
         else "Live: run against the vendors' production APIs."),
        ("Systems covered", ", ".join(
            f"{system_label(s.system)} ({len(s.confirmed_records)} record(s) confirmed)"
            for s in record.systems) or "—"),
    ]
    pdf.key_values(rows)


def _subject(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("2. Request and data subject")
    pdf.key_values([
        ("Filed by", record.who(record.requester)),
        ("Identity verification", record.identity_verification or "—"),
    ])
    pdf.ln(2)
    rows = [(KIND_LABELS.get(i.kind, i.kind), i.purpose.replace("_", " "), i.value,
             system_label(i.system) if i.system else "—") for i in record.subject]
    pdf.grid(("Identifier", "Purpose", "Value (masked)", "System"), (30, 30, 80, 34), rows,
             mono_columns=(2,))
    pdf.ln(1)
    pdf.paragraph("Identifiers are shown masked: this record never holds the subject's data in clear.",
                  size=7.5, style="I", color=MUTED)


def _decisions(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("3. Decisions")
    if not record.decisions:
        pdf.paragraph("No approval decision was taken before the request was closed.")
        return
    rows = [(record.who(d.approver), "Approved" if d.decision == "approve" else "Rejected",
             at(d.decided_at), d.reason or "—") for d in record.decisions]
    pdf.grid(("Decided by", "Decision", "Time (UTC)", "Reason"), (46, 20, 34, 74), rows)


def _steps(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("4. Execution steps")
    if not record.steps:
        pdf.paragraph("No step was executed: the request was closed before execution.")
        return
    rows = [(str(s.position), system_label(s.system), s.action, s.status,
             at(s.started_at, "\n"), at(s.finished_at, "\n"), f"{result_summary(s)}"
             + (f" ({len(s.attempts)} attempts)" if len(s.attempts) > 1 else ""))
            for s in record.steps]
    pdf.grid(("#", "System", "Action", "Status", "Started (UTC)", "Finished (UTC)", "Result"),
             (6, 26, 27, 13, 21, 21, 60), rows, size=7.2)


def _plan(pdf: _Document, record: ComplianceRecord) -> None:
    if not record.plan:
        return
    pdf.heading("4b. Erasure plan, as approved, and what the vendors showed afterwards")
    pdf.paragraph(f"Plan SHA-256 {record.plan_sha256 or '—'}: the requester reviewed each line; "
                  "the approvals above name the plan they approved. Only these actions ran; a "
                  "line counts as done only when reading the vendor back showed it.", size=7.5)
    rows = [(system_label(p.system), f"{p.kind} {p.record_id}",
             "; ".join(p.how_found[:3]) or "—",
             p.action + (f" (proposed {p.proposed}; changed by {record.who(p.changed_by)})"
                         if p.changed_by else ""),
             "not acted on" if p.action == "leave" else
             (f"{at(p.done_at)}: {p.verified}" if p.verified else "NOT verified"))
            for p in record.plan]
    pdf.grid(("System", "Record", "How it was found (masked)", "Action", "Read back"),
             (24, 22, 58, 30, 40), rows, size=7.0)


def _manifest(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("5. Export manifest")
    if not record.export_manifest:
        text = "No export package was produced for this request."
        if record.exports_purged_at:
            text += f" Exported data was deleted on {when(record.exports_purged_at)} (retention)."
        pdf.paragraph(text)
        return
    if record.export_archive_sha256:
        pdf.key_values([("Archive SHA-256", record.export_archive_sha256)],
                       mono={"Archive SHA-256"})
        pdf.ln(1)
    rows = [(f.name, f"{f.bytes:,}", f.sha256) for f in record.export_manifest]
    pdf.grid(("File", "Bytes", "SHA-256"), (52, 18, 104), rows, mono_columns=(2,),
             aligns=("LEFT", "RIGHT", "LEFT"))
    if record.exports_purged_at:
        pdf.ln(1)
        pdf.paragraph(f"The files were deleted on {when(record.exports_purged_at)} (retention); "
                      "their hashes remain.", size=7.5, style="I", color=MUTED)


def _trail(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("6. Audit events of this request")
    rows = [(f"#{e.seq}", at(e.occurred_at), record.who(e.actor), e.action, e.hash[:16] + "…")
            for e in record.trail]
    pdf.grid(("Event", "Time (UTC)", "Actor", "Action", "Hash (start)"), (12, 32, 46, 44, 40), rows,
             mono_columns=(4,), size=7.2)
    pdf.ln(1)
    pdf.paragraph("Full hashes are in the JSON version of this record. " + _named(record),
                  size=7.5, style="I", color=MUTED)


def _named(record: ComplianceRecord) -> str:
    if record.people:
        return ("People are named as Slack showed them when this record was made, with their "
                "Slack user ids.")
    return "People are named by their Slack user ids."


def _anchor(pdf: _Document, record: ComplianceRecord) -> None:
    pdf.heading("7. Audit anchor")
    a, head = record.anchor, record.chain_head
    pdf.key_values([
        ("Closing event", f"#{a.seq} · {a.action} · {when(a.occurred_at)} · {record.who(a.actor)}"),
        ("Closing event hash", a.hash),
        ("Chain head at generation", f"#{head.seq}"),
        ("Chain head hash", head.hash),
        ("Request's audit events", f"{len(record.trail)} (#{record.trail[0].seq} to "
                                   f"#{record.trail[-1].seq})" if record.trail else "—"),
    ], mono={"Closing event hash", "Chain head hash"})
    pdf.ln(2)
    pdf.paragraph(
        f"To verify this record, run \u201cdsr-desk audit verify --record {record.reference}"
        f"-compliance-record.json\u201d against the production database: it must report the trail "
        f"intact, and audit event #{a.seq} must still carry the closing event hash above. Each "
        "event's hash covers the one before it, so a matching hash proves that nothing up to the "
        "closing of this request was altered, removed or reordered.",
        size=8)
