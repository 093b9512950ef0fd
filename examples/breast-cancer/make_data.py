"""Write scikit-learn's breast-cancer table (shipped with scikit-learn: no download) to data/breast_cancer.csv.

569 rows, 30 numeric columns named as the original study names them ("mean radius", ...), and the
diagnosis as text ("malignant", "benign"). Byte-for-byte reproducible, so the DVC pointer beside it
(data/breast_cancer.csv.dvc) pins it.
"""
from pathlib import Path

from sklearn.datasets import load_breast_cancer

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    table = load_breast_cancer(as_frame=True)
    frame = table.data.round(6)
    frame["diagnosis"] = [str(table.target_names[t]) for t in table.target]
    (HERE / "data").mkdir(exist_ok=True)
    frame.to_csv(HERE / "data" / "breast_cancer.csv", index=False, lineterminator="\n")
    print(f"wrote {HERE.name}/data/breast_cancer.csv: {len(frame)} rows, {frame.shape[1] - 1} features")
