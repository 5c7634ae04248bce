"""`shapes`: a procedural visual world (coloured shapes on a plain background) with exact ground truth.

    - {name: world, kind: shapes, count: 500, tasks: [color, shape, count, position, caption],
       image_size: 64, seed: 0, imbalance: {count: 50}}

Why: an efficacy benchmark needs tasks whose answers are known exactly, that a tiny model can learn
in minutes, and whose sizes can be skewed on purpose (the temperature experiment). Every image is a
pure function of (seed, task, row), drawn with PIL without anti-aliasing and stored as PNG bytes, so
the same recipe gives the same bytes and the same row ids. Shapes never touch each other or the border.

Rows per task (`count` each, or `imbalance[task]`); the row's `task` is the task name:
- color:    one shape; "What colour is the shape?" → "red"
- shape:    one large shape; "What shape is this?" → "circle"
- size:     one shape; "Is the shape small or large?" → "small" (side 14–20 % or 30–42 % of the image)
- count:    1..max_count small shapes; "How many shapes are there?" → "3"
- position: one shape wholly in the left or right half; "Is the shape on the left or on the right?" → "left"
- relation: two shapes of different kinds, one per half; "Is the circle left or right of the square?"
- caption:  one shape; caption "a small red circle on the left" (size, colour, kind, third of the image)
The scene (every shape's kind, colour, box) goes into the row's context, so it reaches `meta`.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from vlmdata.rows import ImageRef, Record, Reject
from vlmdata.sources.base import SourceSpec

TaskName = Literal["color", "shape", "size", "count", "position", "relation", "caption"]
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 220),
    "yellow": (235, 215, 40), "purple": (140, 50, 180), "orange": (245, 140, 20),
}
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((255, 255, 255), (200, 200, 200), (40, 40, 40))
KINDS = ("circle", "square", "triangle")
SIZES = {"small": (0.14, 0.2), "large": (0.3, 0.42)}  # side as a fraction of the image side
THIRDS = ("left", "middle", "right")


class ShapesSpec(SourceSpec):
    kind: Literal["shapes"] = "shapes"
    count: int = Field(default=100, ge=1)
    tasks: list[TaskName] = Field(default_factory=lambda: ["color", "shape", "count", "position", "caption"],
                                  min_length=1)
    imbalance: dict[TaskName, int] = Field(default_factory=dict)  # rows per task, overriding `count`
    image_size: int = Field(default=64, ge=32, le=1024)
    max_count: int = Field(default=5, ge=1, le=8)
    seed: int = 0

    @model_validator(mode="after")
    def _imbalance_names_tasks(self) -> ShapesSpec:
        extra = sorted(set(self.imbalance) - set(self.tasks))
        if extra:
            raise ValueError(f"imbalance names task(s) {extra} that are not in tasks {self.tasks}")
        if any(n < 0 for n in self.imbalance.values()):
            raise ValueError("imbalance counts must be >= 0")
        return self

    @property
    def path(self) -> str:
        """What plans show as this source's path: it has no file."""
        return f"<procedural seed={self.seed} size={self.image_size}>"

    def rows_per_task(self) -> dict[str, int]:
        return {t: self.imbalance.get(t, self.count) for t in self.tasks}


def _place(rng: random.Random, *, size: int, side: int, taken: list[tuple[int, int, int, int]],
           x_range: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A box of `side` px whose left edge lies in x_range, 2 px clear of the border and of `taken`."""
    lo, hi = max(x_range[0], 2), min(x_range[1], size - side - 2)
    for _ in range(200):
        if lo > hi:
            return None
        x, y = rng.randint(lo, hi), rng.randint(2, size - side - 2)
        box = (x, y, x + side, y + side)
        if all(box[2] + 2 < b[0] or b[2] + 2 < box[0] or box[3] + 2 < b[1] or b[3] + 2 < box[1] for b in taken):
            return box
    return None


def _side(rng: random.Random, *, size: int, label: str) -> int:
    lo, hi = SIZES[label]
    return rng.randint(round(lo * size), round(hi * size))


def _shape(rng: random.Random, *, size: int, taken: list, x_range: tuple[int, int] | None = None,
           span: tuple[int, int] | None = None, kind: str | None = None,
           label: str | None = None) -> dict[str, Any] | None:
    """A random shape placed clear of `taken`: its left edge in `x_range`, or its whole box in `span`."""
    label = label or rng.choice(list(SIZES))
    side = _side(rng, size=size, label=label)
    if span is not None:
        x_range = (span[0], span[1] - side)
    box = _place(rng, size=size, side=side, taken=taken, x_range=x_range or (0, size))
    if box is None:
        return None
    taken.append(box)
    return {"kind": kind or rng.choice(KINDS), "color": rng.choice(list(COLOURS)), "size": label, "box": list(box)}


def scene(*, task: str, rng: random.Random, size: int, max_count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(shapes, fields) for one row of `task`; a None shape means a placement did not fit (the caller redraws)."""
    taken: list = []
    if task in ("color", "shape"):
        # shape questions use large shapes: a 4-px triangle and a 4-px circle differ by a pixel or two
        shape = _shape(rng, size=size, taken=taken, label="large" if task == "shape" else None)
        question = "What colour is the shape?" if task == "color" else "What shape is this?"
        return [shape], {"question": question, "answers": [shape["color"] if task == "color" else shape["kind"]]}
    if task == "size":
        shape = _shape(rng, size=size, taken=taken)
        return [shape], {"question": "Is the shape small or large?", "answers": [shape["size"]] if shape else []}
    if task == "count":
        n = rng.randint(1, max_count)
        shapes = [_shape(rng, size=size, taken=taken, label="small") for _ in range(n)]
        return shapes, {"question": "How many shapes are there?", "answers": [str(n)]}
    if task == "position":
        left = rng.random() < 0.5
        span = (0, size // 2 - 2) if left else (size // 2 + 2, size)  # the whole shape lies in its half
        shape = _shape(rng, size=size, taken=taken, span=span)
        return [shape], {"question": "Is the shape on the left or on the right?",
                         "answers": ["left" if left else "right"]}
    if task == "relation":
        a, b = rng.sample(KINDS, 2)
        halves = [(0, size // 2 - 4), (size // 2 + 2, size)]
        rng.shuffle(halves)
        shapes = [_shape(rng, size=size, taken=taken, x_range=h, kind=k, label="small")
                  for h, k in zip(halves, (a, b), strict=True)]
        answer = "left" if halves[0][0] == 0 else "right"
        return shapes, {"question": f"Is the {a} left or right of the {b}?", "answers": [answer]}
    third = rng.randrange(3)
    label = rng.choice(list(SIZES))
    side = _side(rng, size=size, label=label)
    # the shape's centre lies in its third: left edge in [third·S/3 − side/2, (third+1)·S/3 − side/2)
    x_range = (round(third * size / 3 - side / 2) + 1, round((third + 1) * size / 3 - side / 2) - 1)
    box = _place(rng, size=size, side=side, taken=taken, x_range=x_range)
    if box is None:
        return [None], {}
    shape = {"kind": rng.choice(KINDS), "color": rng.choice(list(COLOURS)), "size": label, "box": list(box)}
    where = "in the middle" if THIRDS[third] == "middle" else f"on the {THIRDS[third]}"
    return [shape], {"caption": [f"a {label} {shape['color']} {shape['kind']} {where}"]}


def draw(*, shapes: list[dict[str, Any]], size: int, background: tuple[int, int, int]) -> bytes:
    """PNG bytes of the scene (no anti-aliasing: every pixel is the background or a shape's colour)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    for s in shapes:
        x0, y0, x1, y1 = s["box"]
        colour = COLOURS[s["color"]]
        if s["kind"] == "circle":
            pen.ellipse((x0, y0, x1, y1), fill=colour)
        elif s["kind"] == "square":
            pen.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            pen.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def read_shapes(spec: ShapesSpec) -> Iterator[Record | Reject]:
    for task, n in spec.rows_per_task().items():
        for i in range(n):
            rng = random.Random(f"{spec.seed}:{task}:{i}")
            for _ in range(20):
                shapes, fields = scene(task=task, rng=rng, size=spec.image_size, max_count=spec.max_count)
                if all(s is not None for s in shapes):
                    break
            else:
                yield Reject(spec.name, f"{task}[{i}]", "no_room", f"could not place the shapes in "
                             f"{spec.image_size}px (lower max_count or raise image_size)", "load")
                continue
            background = rng.choice(BACKGROUNDS)
            png = draw(shapes=shapes, size=spec.image_size, background=background)
            context = {"scene": shapes, "background": list(background), "seed": spec.seed, "row": i}
            yield Record(source=spec.name, locator=f"{task}[{i}]", task=task, images=[ImageRef(data=png)],
                         fields=fields, context=context)
