"""The Gradio Blocks: an Explore tab (a dataset's rows, filtered, with their plans drawn) and a
Plan tab (a task → a plan, drawn, with its dry-run schedule).

Every handler catches what can go wrong and puts one line in the page (an error Markdown and a
`gr.Warning` toast), so a user never sees a stack trace. Plans and rows are drawn as
```` ```mermaid ```` blocks in `gr.Markdown`, which Gradio renders with mermaid.js as SVG.
"""

from __future__ import annotations

import os
from typing import Any

# No usage statistics and no version check leave the machine (read when gradio is imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from taskdecomp.app.explore import (  # noqa: E402
    ALL,
    ExploreData,
    filter_rows,
    load_dataset_rows,
    row_markdown,
    summary_markdown,
)
from taskdecomp.app.messages import error_markdown, error_message  # noqa: E402
from taskdecomp.app.planning import (  # noqa: E402
    SCHEDULE_HEADERS,
    PlannerSpec,
    plan_markdown,
    plan_task,
    schedule_rows,
)

__all__ = ["build_app", "EXAMPLE_TASKS", "TITLE"]

TITLE = "Multi-modal task decomposition"
EXAMPLE_TASKS = [
    "Record a podcast about urban beekeeping, transcribe it and design a cover image",
    "I have interview.wav and cover.jpg: transcribe the interview and write a blog post around the photo",
    "Film a product demo, add a voice-over and write the captions",
]
_PLANNER_CHOICES = [
    ("heuristic (keyword rule, no model)", "heuristic"),
    ("adapter (train-adapter folder or Hub id)", "adapter"),
    ("OpenAI-compatible server (base URL + model)", "server"),
]


def _empty_schedule() -> dict[str, Any]:
    return {"headers": SCHEDULE_HEADERS, "data": []}


def _planner_fields(kind: str) -> tuple[Any, Any, Any]:
    return (
        gr.update(visible=kind == "adapter"),
        gr.update(visible=kind == "server"),
        gr.update(visible=kind == "server"),
    )


def _on_plan(
    task: str,
    context: str,
    kind: str,
    adapter: str,
    base_url: str,
    model: str,
    progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 - gradio's way to ask for it
) -> tuple[str, str, dict[str, Any]]:
    def report(fraction: float, desc: str) -> None:
        progress(fraction, desc=desc)

    try:
        spec = PlannerSpec(kind or "heuristic", adapter or "", base_url or "", model or "")
        plan = plan_task(task or "", context or "", spec, report)
    except Exception as exc:  # noqa: BLE001 - every failure is one line in the page
        gr.Warning(error_message(exc))
        return error_markdown(exc), "", _empty_schedule()
    return "", plan_markdown(plan), {"headers": SCHEDULE_HEADERS, "data": schedule_rows(plan)}


def _choices(values: list[str]) -> list[str]:
    return [ALL, *values]


def _on_load(source: str) -> tuple[Any, ...]:
    """Load → (state, status, summary, chart, combo, structure, style, slider, row, matches)."""
    try:
        data = load_dataset_rows(source or "")
        chart = str(data.chart())
    except Exception as exc:  # noqa: BLE001
        gr.Warning(error_message(exc))
        blank = gr.update()
        return (None, error_markdown(exc), "", None, blank, blank, blank, blank, "", [])
    matches = filter_rows(data)
    return (
        data,
        "",
        summary_markdown(data),
        chart,
        gr.update(choices=_choices(data.combos), value=ALL),
        gr.update(choices=_choices(data.structures), value=ALL),
        gr.update(choices=_choices(data.styles), value=ALL, visible=data.has_style),
        _position(matches),
        _row_view(data, matches, 1),
        matches,
    )


def _position(matches: list[int]) -> Any:
    return gr.update(value=1, maximum=max(1, len(matches)), label=f"Row (1 to {len(matches)} matching)")


def _row_view(data: ExploreData | None, matches: list[int], position: float | None) -> str:
    if data is None:
        return ""
    if not matches:
        return "No row matches these filters."
    k = min(max(1, int(position or 1)), len(matches))
    return row_markdown(data.rows[matches[k - 1]], position=f"row {k} of {len(matches)} matching")


def _on_filter(
    data: ExploreData | None, combo: str, structure: str, style: str
) -> tuple[Any, str, list[int]]:
    if data is None:
        return gr.update(), "", []
    matches = filter_rows(data, combo or ALL, structure or ALL, style or ALL)
    return _position(matches), _row_view(data, matches, 1), matches


def build_app(
    *,
    dataset: str | None = None,
    planner: str = "heuristic",
    adapter: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
) -> gr.Blocks:
    """The app's Blocks (not launched): `build_app(...).launch()`. `dataset` is loaded into the
    Explore tab when a page opens; the planner fields start with the given values."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {TITLE}\n"
            "Complex requests mixing text, image, audio and video, split into ordered, typed steps. "
            "**Plan** a task with a planner, or **Explore** the dataset the planners learn from."
        )
        with gr.Tab("Plan", id="plan"):
            with gr.Row():
                with gr.Column(scale=3):
                    task = gr.Textbox(
                        label="Task",
                        placeholder="e.g. " + EXAMPLE_TASKS[0],
                        lines=3,
                        elem_id="task-input",
                    )
                    context = gr.Textbox(label="Input (optional context)", lines=1, elem_id="task-context")
                with gr.Column(scale=2):
                    kind = gr.Radio(_PLANNER_CHOICES, value=planner, label="Planner", elem_id="planner-kind")
                    adapter_box = gr.Textbox(
                        value=adapter or "",
                        label="Adapter",
                        placeholder="adapters/smollm2-135m-cpu or USER/decomposer",
                        visible=planner == "adapter",
                    )
                    url_box = gr.Textbox(
                        value=base_url or "",
                        label="Base URL",
                        placeholder="http://127.0.0.1:8000/v1",
                        visible=planner == "server",
                    )
                    model_box = gr.Textbox(
                        value=model or "",
                        label="Model (empty: the server's first)",
                        visible=planner == "server",
                    )
            plan_button = gr.Button("Plan", variant="primary", elem_id="plan-button")
            gr.Examples(EXAMPLE_TASKS, inputs=[task], label="Example tasks")
            message = gr.Markdown(elem_id="plan-message")
            graph = gr.Markdown(elem_id="plan-graph")
            schedule = gr.Dataframe(
                value=_empty_schedule(),
                headers=SCHEDULE_HEADERS,
                label="Dry-run schedule: steps of one wave run together",
                interactive=False,
                wrap=True,
                elem_id="plan-schedule",
            )
            kind.change(_planner_fields, inputs=[kind], outputs=[adapter_box, url_box, model_box])
            inputs = [task, context, kind, adapter_box, url_box, model_box]
            outputs = [message, graph, schedule]
            plan_button.click(_on_plan, inputs=inputs, outputs=outputs)
            task.submit(_on_plan, inputs=inputs, outputs=outputs)

        with gr.Tab("Explore", id="explore"):
            state = gr.State(None)
            matches = gr.State([])
            with gr.Row():
                source = gr.Textbox(
                    value=dataset or "",
                    label="Dataset",
                    placeholder="a build-dataset folder or a Hub id such as USER/task-decomposition",
                    scale=4,
                    elem_id="dataset-source",
                )
                load_button = gr.Button("Load", scale=1, elem_id="dataset-load")
            status = gr.Markdown(elem_id="explore-message")
            with gr.Row():
                combo = gr.Dropdown([ALL], value=ALL, label="Modality combination", elem_id="filter-combo")
                structure = gr.Dropdown([ALL], value=ALL, label="Structure", elem_id="filter-structure")
                style = gr.Dropdown(
                    [ALL], value=ALL, label="Request style", visible=False, elem_id="filter-style"
                )
            position = gr.Number(value=1, minimum=1, precision=0, step=1, label="Row", elem_id="row-position")
            row_view = gr.Markdown(elem_id="explore-row")
            with gr.Accordion("Coverage", open=True):
                chart = gr.Image(
                    label="Coverage chart",
                    type="filepath",
                    interactive=False,
                    height=480,
                    elem_id="coverage-chart",
                )
                summary = gr.Markdown(elem_id="explore-summary")
            loaded = [state, status, summary, chart, combo, structure, style, position, row_view, matches]
            load_button.click(_on_load, inputs=[source], outputs=loaded)
            source.submit(_on_load, inputs=[source], outputs=loaded)
            for dropdown in (combo, structure, style):
                dropdown.input(
                    _on_filter, inputs=[state, combo, structure, style], outputs=[position, row_view, matches]
                )
            position.change(_row_view, inputs=[state, matches, position], outputs=[row_view])
        if dataset:
            demo.load(_on_load, inputs=[source], outputs=loaded)
    return demo
