"""The docks' base class: a form, Run and Cancel, a thread worker with a progress bar, the status
line, notifications, warnings from the core shown to the user, and layer-list callbacks."""

from __future__ import annotations

import logging
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .._validation import ZonationCancelled, ZonationInputError
from ._layers import KEY, ROLE, is_owned, same, source_image, unwrap, zmeta

logger = logging.getLogger("napari_zonation.widgets")


#: The smallest height of a dock's scrolled body (px): five docks fit a 800 px high screen.
MIN_DOCK_HEIGHT = 90


def user_warnings(caught) -> list[str]:
    """The messages of the UserWarnings a core call raised (to show, not to silence)."""
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def error_message(exc: BaseException) -> str:
    """A message a person can act on: the core's input errors as they are, others typed."""
    if isinstance(exc, ZonationInputError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """Record the warnings raised inside the block, to show them to the user.

    ``with recorded_warnings() as caught: ...`` fills ``caught`` with the distinct messages
    when the block ends (every warning is recorded, none is printed or silenced unseen); pass
    them to :meth:`ZonationWidget.show_warnings`.
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages.extend(dict.fromkeys(str(w.message) for w in caught))


class Cancelled(ZonationCancelled):
    """Raised inside a job when the user pressed Cancel."""


class Progress(NamedTuple):
    """A message a job yields when it knows how far it is: ``done`` of ``total`` (which may
    differ from the widget's ``_steps``), shown with ``text``."""

    done: int
    total: int
    text: str = ""


class ZonationWidget(QWidget):
    """Base dock widget: a form, Run and Cancel buttons, a progress bar and a status line.

    Subclasses implement

    - ``_collect() -> dict``: read the parameters and layer data (main thread; raise
      :class:`~napari_zonation.ZonationInputError` for bad input);
    - ``_steps(params) -> int``: how many times ``_work`` yields;
    - ``_work(params)``: a generator run in a napari thread worker; it yields progress
      messages (one per step) and returns the result; it must not touch layers or Qt;
    - ``_apply(params, result)``: write the result into layers (main thread).

    ``run()`` starts the thread worker (progress bar in the dock and in napari's activity
    dock). ``run(blocking=True)`` runs the same generator in the calling thread and applies
    its result: for scripts and tests.
    """

    title = "napari-zonation"
    run_text = "Run"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._cancel_event = threading.Event()
        self._combos: list = []
        self._layer_name_hooks: set[int] = set()
        self.setMinimumWidth(410)  # the widest form (Profiles tabs) with a scroll bar

        # everything sits in a scroll area, so that several docks fit a 1280 x 800 screen
        # (a dock can shrink to a few rows and scroll, rather than push the window taller)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.scroll_area.setMinimumHeight(MIN_DOCK_HEIGHT)
        self.content = QWidget()
        self.scroll_area.setWidget(self.content)
        outer.addWidget(self.scroll_area)
        self._layout = QVBoxLayout(self.content)
        self._layout.setContentsMargins(6, 6, 6, 6)
        self._form = QFormLayout()
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        # a field too wide beside its label goes below it, so the dock stays narrow
        self._form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self._layout.addLayout(self._form)

        self.run_button = QPushButton(self.run_text)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self._buttons = QHBoxLayout()
        self._buttons.addWidget(self.run_button, 2)
        self._buttons.addWidget(self.cancel_button, 1)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumHeight(14)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        for lay in self.viewer.layers:
            self._hook_name(lay)

    # ---------------------------------------------------------------- layout helpers
    def _finish_layout(self, stretch: bool = True) -> None:
        """Add the Run/Cancel row, the progress bar and the status line (call once)."""
        self._layout.addLayout(self._buttons)
        self._layout.addWidget(self.progress_bar)
        self._layout.addWidget(self.status)
        if stretch:
            self._layout.addStretch(1)

    def _add_combo(self, combo, form: QFormLayout | None = None):
        self._combos.append(combo)
        (form if form is not None else self._form).addRow(combo.label, combo.native)
        combo.reset_choices()
        # start on the plugin's own crystals layer when there is one
        for choice in combo.choices:
            if is_owned(choice) and zmeta(choice, create=False).get(KEY.role) == ROLE.crystals:
                combo.value = choice
                break
        return combo

    # ---------------------------------------------------------------- layer list
    def _hook_name(self, layer) -> None:
        if id(unwrap(layer)) in self._layer_name_hooks:
            return
        self._layer_name_hooks.add(id(unwrap(layer)))
        layer.events.name.connect(self._on_layers_changed)

    def _on_layers_changed(self, event=None) -> None:
        inserted = None
        if event is not None and getattr(event, "type", "") == "inserted":
            inserted = event.value
            self._hook_name(inserted)
        self.reset_choices()
        if inserted is not None and is_owned(inserted):
            # a new crystals layer made by the plugin becomes the current choice
            if zmeta(inserted, create=False).get(KEY.role) == ROLE.crystals:
                for combo in self._combos:
                    try:
                        if any(same(c, inserted) for c in combo.choices):
                            combo.value = inserted
                    except RuntimeError:  # pragma: no cover - widget deleted
                        pass

    def _follow_source_image(self, layer) -> None:
        """Show in ``self.image_combo`` the image a plugin-owned layer was made from."""
        image = None if layer is None else source_image(self.viewer, layer)
        if image is not None:
            self.image_combo.value = image

    def reset_choices(self, event=None) -> None:
        """Refresh the layer pickers (napari also calls this when the layer list changes)."""
        for combo in self._combos:
            try:
                combo.reset_choices()
            except RuntimeError:  # the Qt widget is already deleted
                pass

    # ---------------------------------------------------------------- status
    def set_status(self, text: str, error: bool = False) -> None:
        try:
            self.status.setStyleSheet("color: #ff7070;" if error else "")
            self.status.setText(text)
        except RuntimeError:  # pragma: no cover - widget deleted
            pass

    def _notify_error(self, message: str) -> None:
        self.set_status(message, error=True)
        try:
            from napari.utils.notifications import show_error

            show_error(f"{self.title}: {message}")
        except Exception:  # pragma: no cover - no notification manager
            logger.error("%s: %s", self.title, message)

    def show_warnings(self, messages: Iterable[str], shown: int = 3) -> None:
        """Show warnings from the core: added to the status line (the first ``shown``) and
        sent as one napari notification."""
        msgs = list(dict.fromkeys(str(m) for m in messages if str(m)))
        if not msgs:
            return
        text = "; ".join(msgs[:shown])
        if len(msgs) > shown:
            text += f" (and {len(msgs) - shown} more)"
        current = self.status.text().strip()
        self.set_status(f"{current} Warning: {text}" if current else f"Warning: {text}")
        try:
            from napari.utils.notifications import show_warning

            show_warning(f"{self.title}: {text}")
        except Exception:  # pragma: no cover - no notification manager
            logger.warning("%s: %s", self.title, text)

    # ---------------------------------------------------------------- running
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def check_cancel(self) -> None:
        """Call inside a job between steps: raises :class:`Cancelled` after Cancel."""
        if self._cancel_event.is_set():
            raise Cancelled()

    def calls_with_progress(
        self, fn: Callable, message: Callable[[int, int], Any], *args, **kwargs
    ) -> Generator:
        """Inside ``_work``: run ``fn(*args, progress=..., **kwargs)`` and yield its progress.

        ``fn`` runs in its own thread and reports ``progress(done, total)``; this generator
        yields ``message(done, total)`` for each report (to the progress bar and status line)
        and returns ``fn``'s result (``result = yield from self.calls_with_progress(...)``).
        After Cancel the next report raises :class:`Cancelled` inside ``fn``, which stops it.
        """
        updates: queue.Queue = queue.Queue()
        cancel = self._cancel_event

        def progress(done: int, total: int) -> None:
            if cancel.is_set():
                raise Cancelled()
            updates.put((done, total))

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-zonation")
        try:
            future = pool.submit(fn, *args, progress=progress, **kwargs)
            while True:
                if cancel.is_set():
                    raise Cancelled()
                try:
                    yield message(*updates.get(timeout=0.1))
                except queue.Empty:
                    if future.done() and updates.empty():
                        break
            return future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def run(self, blocking: bool = False):
        """Collect the parameters and run the job (in a thread worker unless ``blocking``).

        Returns the worker (or, with ``blocking``, the job's result; None on failure).
        """
        if self.busy:
            self.set_status("Already running; press Cancel first.")
            return None
        try:
            params = self._collect()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return None
        if params is None:
            return None
        self._cancel_event = threading.Event()
        total = max(1, int(self._steps(params)))
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.set_status("Running…")
        if blocking:
            try:
                gen = self._work(params)
                result = yield_all(gen, self._on_yielded)
                if not self._on_returned(params, result):
                    return None
            except ZonationCancelled:
                self._on_aborted()
                return None
            except Exception as exc:  # noqa: BLE001
                self._on_error(exc)
                return None
            finally:
                self.progress_bar.hide()
            return result

        from napari.qt.threading import create_worker

        worker = create_worker(
            self._work,
            params,
            _progress={"total": total, "desc": self.title},
            _ignore_errors=True,
            _start_thread=False,
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda result: self._on_returned(params, result))
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job at its next step (answers already received are kept)."""
        self._cancel_event.set()
        if self._worker is not None:
            self._worker.quit()
            self.set_status("Cancelling…")

    def _on_yielded(self, message) -> None:
        """One step done; a :class:`Progress` message sets the bar's position and range."""
        try:
            bar = self.progress_bar
            if isinstance(message, Progress):
                bar.setRange(0, max(1, message.total))
                bar.setValue(min(message.done, bar.maximum()))
                message = message.text
            else:
                bar.setValue(min(bar.value() + 1, bar.maximum()))
        except RuntimeError:  # pragma: no cover - widget deleted
            return
        if isinstance(message, str) and message:
            self.set_status(message)

    def _on_returned(self, params, result) -> bool:
        try:
            self._apply(params, result)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return False
        return True

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, ZonationCancelled):  # the widget's own or a core batch's
            self._on_aborted()
            return
        if not isinstance(exc, ZonationInputError):
            logger.error("%s failed", self.title, exc_info=exc)
        self._notify_error(error_message(exc))

    def _on_aborted(self) -> None:
        self.set_status("Cancelled.")

    def _on_finished(self) -> None:
        self._worker = None
        try:
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.progress_bar.hide()
        except RuntimeError:  # pragma: no cover - widget deleted
            pass

    # ---------------------------------------------------------------- subclass API
    def _collect(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _steps(self, params: dict) -> int:
        return 1

    def _work(self, params: dict) -> Generator[str, None, Any]:  # pragma: no cover
        raise NotImplementedError

    def _apply(self, params: dict, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def yield_all(gen: Generator, on_yield: Callable[[Any], None]):
    """Drive a generator to its end in this thread; return its return value."""
    while True:
        try:
            on_yield(next(gen))
        except StopIteration as stop:
            return stop.value


def chunks(items, n_chunks: int) -> list:
    """Split a sequence into at most ``n_chunks`` contiguous, non-empty pieces."""
    items = list(items)
    if not items:
        return []
    n = max(1, min(n_chunks, len(items)))
    return [list(part) for part in np.array_split(np.array(items, dtype=object), n) if len(part)]


def weak_method(method) -> Callable:
    """A callable that calls a bound method while its object lives (for layer callbacks)."""
    ref = weakref.WeakMethod(method)

    def call(*args, **kwargs):
        m = ref()
        if m is None:
            return None
        try:
            return m(*args, **kwargs)
        except RuntimeError:  # the Qt widget is deleted
            return None

    return call
