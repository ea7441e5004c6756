"""Data in and out: each rank reads only its rows of a data file; results are written atomically.

    shard = fastdp.data.read_rows("train.parquet", rank=comm.rank, size=comm.size)
    shard.X, shard.y          # this rank's rows: features (m, n) and labels (m,)
    shard.rows, shard.n_rows  # which rows of the file those are, and how many the file has

    source = fastdp.data.open_source("big.parquet")   # metadata only
    for rows in fastdp.data.stream_chunks(source, 65536):  # or any row ranges
        shard = fastdp.data.read_shard(source, rows)

Row counts come from metadata (the .npy header, the Parquet footer) or from one cheap pass that
counts the newlines of a CSV or text file (fastdp.data.lines); after that a rank reads the bytes of
its own rows only. The format comes from the file name's extension:

- `.npy`: a 2-D numeric array, memory-mapped; this rank's rows are copied out 64 MiB at a time.
- `.csv`: numbers separated by commas, one row per line, parsed by pandas in blocks of rows. The
  first line is a header of column names when none of its fields is a number.
- `.parquet` / `.pq`: only the row groups that overlap the rows are read (pyarrow, an optional
  dependency: `pip install "fastdp[io]"`). Features must be numeric columns; the label column may
  hold numbers or strings. A URI (s3://bucket/data.parquet, hdfs://host/path, file:///path) is
  opened through pyarrow's filesystem layer, so the same code reads from S3 or HDFS where pyarrow
  is configured for them (AWS credentials in the environment; libhdfs with HADOOP_HOME and
  CLASSPATH set).
- `.txt` / `.tsv`: text, one row per line. With labels, each line is `label<TAB>text` (the label is
  everything before the first TAB, the text everything after it; labels are strings); without,
  each whole line is a document. X is then the list of documents, which
  fastdp.text.HashingFeaturizer turns into features.

Errors are ValueErrors that name the file, the line or row, and the problem. Nothing here is
collective: combine the ranks' outcomes before the next collective.
"""

from .atomic import atomic_file
from .predictions import PREDICTION_FORMATS, PredictionWriter, prediction_format, write_predictions
from .reader import (PARTITIONS, Source, open_source, rank_rows, read_rows, read_shard,
                     stream_chunks)
from .shard import FORMATS, Shard, file_format

__all__ = ["FORMATS", "PARTITIONS", "PREDICTION_FORMATS", "PredictionWriter", "Shard", "Source",
           "atomic_file", "file_format", "open_source", "prediction_format", "rank_rows",
           "read_rows", "read_shard", "stream_chunks", "write_predictions"]
