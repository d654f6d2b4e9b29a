"""The detail screen of one session: why it failed, the recipes to fix it, and the evidence."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from kexproxy.core.record import SessionRecord
from kexproxy.present import recipe_action
from kexproxy.present_tls import recipe_copy
from kexproxy_tui import render, render_tls
from kexproxy_tui.palette import Palette
from kexproxy_tui.recipes import lasting, notes, recipe_options


class DetailScreen(Screen[None]):
    """One session in full; the app hands it a newer version of the session with `show`.

    It is given the record and the palette, so that it needs nothing of the app's.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", tooltip="back to the sessions"),
        Binding(
            "c",
            "copy_recipe",
            "Copy command",
            tooltip="copy the highlighted recipe's whole command (else its steps)",
        ),
        Binding(
            "C",
            "copy_recipe_lasting",
            "Copy config",
            show=False,
            key_display="C",
            tooltip="copy the highlighted recipe's ~/.ssh/config block (else its steps)",
        ),
        Binding(
            "y",
            "copy_message",
            "Copy message",
            show=False,
            tooltip="copy the client's rejection message (else the server's)",
        ),
    ]

    def __init__(self, record: SessionRecord, palette: Palette) -> None:
        super().__init__()
        self.record = record
        self.palette = palette

    @property
    def recipes(self) -> list[dict[str, Any]]:
        return recipe_options(self.record.diagnosis or {})

    def compose(self) -> ComposeResult:
        palette = self.palette
        record = self.record
        tls = record.protocol == "tls"
        with VerticalScroll(id="detail"):
            yield Static(render.overview(record, palette), id="overview", markup=False)
            yield Static(
                render.heading(
                    "Rejections" if any((record.rejections or {}).values()) else "How it ended",
                    palette,
                ),
                classes="heading",
                markup=False,
            )
            yield Static(
                render_tls.events(record, palette) if tls else render.rejections(record, palette),
                id="rejections",
                markup=False,
            )
            if record.diagnosis:
                yield Static(render.heading("Diagnosis", palette), classes="heading", markup=False)
                yield Static(
                    render.diagnosis_summary(record.diagnosis, palette),
                    id="diagnosis",
                    markup=False,
                )
                recipes = self.recipes
                if recipes:
                    yield Static(
                        Text(
                            "each alone fixes it, strongest first: c copies its command, "
                            "C its config",
                            end="",
                        ),
                        classes="hint",
                        markup=False,
                    )
                    yield OptionList(
                        *[
                            Option(prompt, id=str(i))
                            for i, prompt in enumerate(render.recipe_prompts(recipes, palette))
                        ],
                        id="recipes",
                    )
                    for note in notes(recipes):
                        yield Static(render.lit(note), classes="hint", markup=False)
                judged = render.policy_verdict(record, palette)
                if judged is not None:
                    yield Static(judged, id="policy", markup=False)
                verdicts = (
                    render_tls.verdicts(record.diagnosis, palette)
                    if tls
                    else render.diagnosis_verdicts(record.diagnosis, palette)
                )
                if verdicts is not None:
                    yield Static(verdicts, id="verdicts", markup=False)
            offers_title = (
                "Offers (ClientHello, the server's choice)" if tls else "Offers (KEXINIT)"
            )
            yield Static(render.heading(offers_title, palette), classes="heading", markup=False)
            yield Static(
                render_tls.offers(record, palette) if tls else render.offers(record, palette),
                id="offers",
                markup=False,
            )
            yield Static(render.heading("Timeline", palette), classes="heading", markup=False)
            yield Static(render.timeline(record, palette), id="timeline", markup=False)
            yield Static(
                render.heading(
                    "Certificate and fingerprints" if tls else "Host key and fingerprints", palette
                ),
                classes="heading",
                markup=False,
            )
            yield Static(
                render_tls.facts(record, palette) if tls else render.facts(record, palette),
                id="facts",
                markup=False,
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail", VerticalScroll).focus()

    def show(self, record: SessionRecord) -> None:
        """Shows a newer version of the session."""
        self.record = record
        self.refresh(recompose=True)

    def action_back(self) -> None:
        self.dismiss()

    def _chosen_recipe(self) -> dict[str, Any] | None:
        recipes = self.recipes
        if not recipes:
            self.notify("no recipe in this record to copy", severity="warning", markup=False)
            return None
        index = 0
        for option_list in self.query("#recipes").results(OptionList):
            index = option_list.highlighted or 0
        return recipes[min(index, len(recipes) - 1)]

    def action_copy_recipe(self) -> None:
        recipe = self._chosen_recipe()
        if recipe is not None:
            tls = self.record.protocol == "tls"
            self._copy(recipe_copy(recipe) if tls else recipe_action(recipe))

    def action_copy_recipe_lasting(self) -> None:
        recipe = self._chosen_recipe()
        if recipe is not None:
            self._copy(lasting(recipe))

    def action_copy_message(self) -> None:
        rejections = self.record.rejections or {}
        for role in ("client", "server"):
            rejection = rejections.get(role)
            if rejection and rejection.get("message"):
                self._copy(str(rejection["message"]))
                return
        self.notify("no rejection message in this record", severity="warning", markup=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_copy_recipe()

    def _copy(self, text: str) -> None:
        self.app.copy_to_clipboard(text)
        # markup=False: the line holds names and addresses from the wire.
        self.notify(f"copied: {text}", title="clipboard", markup=False)
