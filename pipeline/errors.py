"""User-facing errors: each message names the culprit (file, parameter, value). The CLI prints them
as one line and exits with status 2 instead of a traceback."""


class DcqError(ValueError):
    """Base class of errors caused by input (params, data, stores), not by a bug."""


class ParamsError(DcqError):
    """A params.yaml problem: missing file or section, unknown key, wrong type or value."""


class DatasetError(DcqError):
    """Bad input data: a missing/empty folder, a corrupt or non-image file, a size mismatch."""


class StoreError(DcqError):
    """A stage input store that is missing or does not match the params (bits, size, counts)."""


class TrainingError(DcqError):
    """Training that cannot go on: a loss that is NaN or infinite (the lr or the data are the usual culprits)."""


def finite_loss(loss: float, what: str, step: int) -> float:
    """The loss as a float, or a TrainingError at the first non-finite one (nothing NaN is ever saved)."""
    if loss != loss or loss in (float("inf"), float("-inf")):
        raise TrainingError(f"{what}: the loss is {loss} at step {step}; training stopped (lower the lr, or check "
                            "the train set for NaN or constant images)")
    return loss
