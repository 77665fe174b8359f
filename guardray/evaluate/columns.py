"""Names of the columns evaluation adds to a dataset (sample columns are in `guardray.schema`).

A prediction row holds the sample columns that the input had (`guardray.schema.ID`, ``TEXT``,
``LABEL``, ``POLICY_ID``) plus:

| column        | type    | meaning                                                            |
|---------------|---------|--------------------------------------------------------------------|
| row           | int64   | position of the row in the input file (restores order after Ray)   |
| score         | float64 | P(unsafe) from a classifier; 0/1 from a judge; NaN if unparseable  |
| prediction    | int8    | 0 safe, 1 unsafe, -1 no prediction (unparseable judge answer)       |
| model_ms      | float64 | this row's share of its batch's model time, in milliseconds        |
| answer        | string  | judge only: the raw generated text                                 |
| parse_status  | string  | judge only: "ok" or why the answer could not be parsed             |
| backend_error | string  | judge only: the backend's error for the row ("" when answered)     |
| prompt_cut    | bool    | judge only: the text was cut to fit the judge's context            |
"""

from __future__ import annotations

from guardray.data import ROW  # noqa: F401 - the loaded data's own column

SCORE = "score"
PREDICTION = "prediction"
MODEL_MS = "model_ms"
ANSWER = "answer"
PARSE_STATUS = "parse_status"
BACKEND_ERROR = "backend_error"
PROMPT_CUT = "prompt_cut"

NO_PREDICTION = -1
