"""The one error every importer raises."""


class WeightsImportError(ValueError):
    """A weight file that cannot be imported: unreadable, damaged, of an unknown layout, or made for
    another architecture. The message names the file and, where it applies, the layer and the shapes."""
