"""A matplotlib canvas in the viewer's theme colours and a folding form section."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._colors import theme_colors


class PlotCanvas(QWidget):
    """A matplotlib figure in the dock, in the viewer's theme colours."""

    def __init__(
        self, viewer, parent=None, height: float = 2.6, min_height: int | None = None
    ) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.colors = theme_colors(viewer)
        self.figure = Figure(
            figsize=(4, height), dpi=90, facecolor=self.colors["bg"], layout="constrained"
        )
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(int(height * 90) if min_height is None else min_height)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)

    def axes(self, n: int = 1, sharex: bool = True) -> list:
        """Clear the figure and return ``n`` stacked, styled axes."""
        self.figure.clear()
        axs = self.figure.subplots(n, 1, sharex=sharex, squeeze=False)[:, 0]
        for ax in axs:
            self.style(ax)
        return list(axs)

    def style(self, ax) -> None:
        c = self.colors
        ax.set_facecolor(c["bg"])
        for spine in ax.spines.values():
            spine.set_color(c["fg"])
        ax.tick_params(colors=c["fg"], labelsize=8)
        ax.xaxis.label.set_color(c["fg"])
        ax.yaxis.label.set_color(c["fg"])
        ax.title.set_color(c["fg"])
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.title.set_size(9)

    def message(self, text: str) -> None:
        ax = self.axes(1)[0]
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            text,
            ha="center",
            va="center",
            color=self.colors["fg"],
            fontsize=9,
            wrap=True,
            transform=ax.transAxes,
        )
        self.draw()

    def legend(self, ax, **kwargs) -> None:
        handles, _ = ax.get_legend_handles_labels()
        if not handles:
            return
        leg = ax.legend(fontsize=7, frameon=False, **kwargs)
        for text in leg.get_texts():
            text.set_color(self.colors["fg"])

    def draw(self) -> None:
        self.canvas.draw_idle()


class Section(QWidget):
    """A titled section that folds: a header button with an arrow and a body holding a form
    (``section.form``). Folded sections keep the main form small, as napari's "advanced"
    convention does."""

    def __init__(self, title: str, expanded: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setChecked(expanded)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(12, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        lay.setSpacing(2)
        lay.addWidget(self.header)
        lay.addWidget(self.body)
        self.header.toggled.connect(self.set_expanded)
        self.set_expanded(expanded)

    @property
    def expanded(self) -> bool:
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Unfold (True) or fold (False) the section."""
        if self.header.isChecked() != expanded:
            self.header.setChecked(expanded)  # calls back here
            return
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)
