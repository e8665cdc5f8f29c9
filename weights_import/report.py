"""What an import did, layer by layer, in words a person can check against the file."""
from dataclasses import dataclass, field


@dataclass
class Mapped:
    """One rawcnn layer filled from the file."""
    target: str              # rawcnn layer name
    sources: list            # the file's layer names (two for a split group)
    source_shapes: list      # [shape of each file weight, per source layer]
    target_shapes: dict      # {'w': shape, 'b': shape}
    conversions: list        # [str] each conversion applied, in order

    def to_dict(self):
        return {"target": self.target, "sources": self.sources,
                "source_shapes": [[list(s) for s in shapes] for shapes in self.source_shapes],
                "target_shapes": {k: list(v) for k, v in self.target_shapes.items()},
                "conversions": self.conversions}


@dataclass
class Report:
    path: str
    arch: str
    format: str = None
    format_reason: str = None
    facts: list = field(default_factory=list)
    kernel_layout: str = None
    flip: bool = None
    flip_reason: str = None
    fc_order: str = None
    fc_order_reason: str = None
    num_classes: int = None
    mapped: list = field(default_factory=list)
    missing: list = field(default_factory=list)      # rawcnn layers left at their initialisation
    unexpected: list = field(default_factory=list)   # (file layer, why it was not used)
    spec_changes: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    preprocessing: object = None                      # rawcnn.data.preprocessing.Preprocessing or None

    def to_dict(self):
        return {"path": self.path, "arch": self.arch, "format": self.format, "format_reason": self.format_reason,
                "facts": self.facts, "kernel_layout": self.kernel_layout, "flip": self.flip,
                "flip_reason": self.flip_reason, "fc_order": self.fc_order, "fc_order_reason": self.fc_order_reason,
                "num_classes": self.num_classes, "mapped": [m.to_dict() for m in self.mapped],
                "missing": self.missing, "unexpected": [list(u) for u in self.unexpected],
                "spec_changes": self.spec_changes, "notes": self.notes, "warnings": self.warnings,
                "preprocessing": self.preprocessing.to_dict() if self.preprocessing is not None else None}

    def text(self):
        """The report as lines of text (what `rawcnn import-weights` prints)."""
        out = [f"file:          {self.path}",
               f"architecture:  {self.arch}" + (f" ({self.num_classes} classes)" if self.num_classes else ""),
               f"format:        {self.format} ({self.format_reason})"]
        out += [f"  found: {f}" for f in self.facts]
        if self.kernel_layout:
            out.append(f"kernel layout: {self.kernel_layout}")
        if self.flip is not None:
            out.append(f"kernel flip:   {'yes, rot180' if self.flip else 'no'}: {self.flip_reason}")
        if self.fc_order is not None:
            out.append(f"fc6 rows:      {self.fc_order.upper()}: {self.fc_order_reason}")
        if self.spec_changes:
            out.append("network changed to match the file:")
            out += [f"  {c}" for c in self.spec_changes]
        out.append(f"layers mapped ({len(self.mapped)}):")
        for m in self.mapped:
            src = " + ".join(f"{name} {' '.join(str(tuple(s)) for s in shapes)}"
                             for name, shapes in zip(m.sources, m.source_shapes, strict=True))
            dst = " ".join(str(tuple(s)) for s in m.target_shapes.values())
            out.append(f"  {src} -> {m.target} {dst}")
            out += [f"      {c}" for c in m.conversions]
        if self.missing:
            out.append(f"not in the file, left at their initialisation: {', '.join(self.missing)}")
        if self.unexpected:
            out.append("in the file but not used:")
            out += [f"  {name}: {why}" for name, why in self.unexpected]
        if self.preprocessing is not None:
            out.append(f"preprocessing: {self.preprocessing.describe()}")
        out += [f"note: {n}" for n in self.notes]
        out += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(out)

    def __str__(self):
        return self.text()
