import pandas as pd
import pytest

from ecgproto.score.sources import detect_kind, list_records, parse_shard, shard_chunks


def test_ptbxl_folder_uses_ecg_id_and_rate_specific_files(ptbxl_sample):
    lr = list_records(ptbxl_sample, 100)
    assert lr.kind == "ptbxl" and lr.id_columns == ("ecg_id",) and len(lr) == 500
    assert list(lr.frame["ecg_id"][:3]) == [1, 2, 3] and lr.frame["record_id"][0] == "1"
    assert lr.frame["path"][0].endswith("records100/00000/00001_lr")
    assert list_records(ptbxl_sample, 500).frame["path"][0].endswith("records500/00000/00001_hr")


def test_wfdb_folder_is_searched_recursively_in_sorted_order(cinc_sample, tmp_path):
    records = list_records(cinc_sample.parent, 100)
    assert records.kind == "wfdb" and records.id_columns == ()
    expected = sorted(f"cinc2021/{p.stem}" for p in cinc_sample.glob("*.hea"))
    assert list(records.frame["record_id"]) == expected
    assert records.fingerprint() == list_records(cinc_sample.parent, 100).fingerprint()


def test_manifest_paths_ids_and_extensions(cinc_sample, tmp_path):
    stems = sorted(p.stem for p in cinc_sample.glob("*.hea"))[:3]
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"record": [str(cinc_sample / f"{stems[0]}.hea"), str(cinc_sample / stems[1]), "rel/x.dat"],
                  "patient": ["a", "b", "c"]}).to_csv(manifest, index=False)
    plain = list_records(manifest, 100)
    assert plain.kind == "manifest"
    assert list(plain.frame["path"]) == [str(cinc_sample / stems[0]), str(cinc_sample / stems[1]),
                                         str(tmp_path / "rel" / "x")]
    assert plain.frame["record_id"][0] == str(cinc_sample / stems[0])
    assert list(list_records(manifest, 100, id_column="patient").frame["record_id"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no id column 'nope'"):
        list_records(manifest, 100, id_column="nope")


def test_manifest_without_record_column_is_rejected(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path\nx\n")
    with pytest.raises(ValueError, match="'record' column"):
        list_records(bad, 100)


def test_mimic_folder_uses_subject_and_study(tmp_path):
    pd.DataFrame({"subject_id": [10, 11], "study_id": [500, 501], "ecg_time": ["2180-01-01 10:00:00"] * 2,
                  "path": ["files/p1000/p10/s500/500", "files/p1000/p11/s501/501"]}).to_csv(
        tmp_path / "record_list.csv", index=False)
    records = list_records(tmp_path, 100)
    assert records.kind == "mimic" and records.id_columns == ("subject_id", "study_id")
    assert list(records.frame["record_id"]) == ["500", "501"]
    assert records.frame["path"][1] == str(tmp_path.resolve() / "files/p1000/p11/s501/501")


def test_unknown_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        detect_kind(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no ptbxl_database.csv, no record_list.csv and no .hea"):
        detect_kind(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a .csv manifest"):
        detect_kind(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="only applies to a manifest"):
        (tmp_path / "a.hea").write_text("a 12 100 1000\n")
        list_records(tmp_path, 100, id_column="x")


def test_shards_partition_the_chunks_contiguously():
    for n_records, chunk, n in [(40, 6, 3), (5, 10, 4), (1000, 7, 5)]:
        parts = [shard_chunks(n_records, chunk, (i, n)) for i in range(n)]
        flat = [c for p in parts for c in p]
        assert flat == list(range(-(-n_records // chunk)))


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2", "0/0"])
def test_bad_shard_text(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
