"""Write scikit-learn's bundled handwritten digits (8x8) as Parquet, offline.

    python examples/data/make_digits.py digits.parquet

Columns: `image` (64 floats, 0-16) and `label` (0-9); 1797 rows.
"""

import sys

import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_digits


def main(out: str) -> None:
    digits = load_digits()
    table = pa.table(
        {
            "image": pa.array(
                digits.data.astype("float32").tolist(), type=pa.list_(pa.float32())
            ),
            "label": pa.array(digits.target.astype("int64")),
        }
    )
    pq.write_table(table, out)
    print(f"wrote {table.num_rows} rows to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "digits.parquet")
