"""User-facing errors.

Anything a user can cause (bad video, missing stage output, missing model weights)
raises :class:`StyleTalkerError` with a message that says what is wrong and what to do.
The CLI prints it without a traceback and exits with status 2.
"""


class StyleTalkerError(Exception):
    """An error caused by the input or the environment, reported to the user plainly."""

    exit_code = 2


class InputError(StyleTalkerError):
    """The input file / folder is unusable (not a video, corrupt, no face, ...)."""


class MissingStageError(StyleTalkerError):
    """A previous pipeline stage has not been run (or did not complete) in the work folder."""


class MissingModelError(StyleTalkerError):
    """Optional model weights were requested but are not present at the given local path."""


class DamagedFileError(InputError, ValueError):
    """A file is truncated, garbage, or claims more than it holds (``styletalker.safeload``).
    Also a ValueError, so code that treats an unreadable optional file as absent still can."""


class MissingFileError(InputError, FileNotFoundError):
    """A file the work folder should hold is not there. Also a FileNotFoundError."""


class SettingsError(StyleTalkerError):
    """The chosen options (a preset, ``--set`` values) do not work on this input: training lost its
    surface, an image is too large for the rasterizer, ... The message says what to change."""


class DiskFullError(StyleTalkerError):
    """A write failed for lack of space (a full disk, a quota, or a file-size limit)."""


class StaleStageError(StyleTalkerError):
    """A complete stage was built from inputs that changed since (rebuild it with --force)."""


class OptionsChangedError(StyleTalkerError):
    """A stage folder holds a run with other options or inputs than the ones asked for (--force)."""


class WorkFolderBusyError(StyleTalkerError):
    """Another styletalker process is writing the same work folder."""
