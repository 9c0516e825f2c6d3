"""The command line's option parsers (masktwins_cli.cli_options): values, and one-line errors
that name the option; and the CLI really routes its options through them."""

import pytest
from cli_helpers import assert_user_error, invoke

from masktwins_cli import cli_options as parse
from masktwins_cli.errors import MaskTwinsError


def test_three_numbers_accept_commas_and_x():
    assert parse.zyx_counts("8,128,128", "--shape") == (8, 128, 128)
    assert parse.zyx_counts("8x128x128", "--shape") == (8, 128, 128)
    assert parse.zyx_nanometres("50,4.6,4.6", "--voxel-size") == (50.0, 4.6, 4.6)
    assert parse.zyx_offset("0,-12,40.5", "--offset") == (0.0, -12.0, 40.5)
    for parser in (parse.zyx_counts, parse.zyx_nanometres, parse.zyx_offset):
        assert parser(None, "--x") is None


@pytest.mark.parametrize("parser, text, option, expected", [
    (parse.zyx_counts, "8,128", "--shape", "three positive integers"),
    (parse.zyx_counts, "0,128,128", "--block-shape", "three positive integers"),
    (parse.zyx_counts, "8,1.5,128", "--shape", "three positive integers"),
    (parse.zyx_nanometres, "50,4", "--voxel-size", "three positive numbers"),
    (parse.zyx_nanometres, "50,-4,4", "--resample-to", "in nm"),
    (parse.zyx_nanometres, "50,inf,4", "--voxel-size", "in nm"),
    (parse.zyx_nanometres, "a,b,c", "--voxel-size", "in nm"),
    (parse.zyx_offset, "0,nan,1", "--offset", "three numbers"),
])
def test_three_numbers_refuse_bad_text_naming_the_option(parser, text, option, expected):
    with pytest.raises(MaskTwinsError) as err:
        parser(text, option)
    message = str(err.value)
    assert message.startswith(f"{option} {text!r}") and expected in message and "\n" not in message


def test_label_map():
    assert parse.label_map("191:1, 223:2") == ((191, 1), (223, 2))
    assert parse.label_map(None) is None
    for text, expected in [("191=1", "VALUE:CLASS"), ("1:300", "outside 0..255"),
                           ("1:1,1:2", "listed twice"), (" , ", "no VALUE:CLASS")]:
        with pytest.raises(MaskTwinsError, match=expected):
            parse.label_map(text)


def test_shard_and_pair():
    assert parse.shard(" 2 / 3 ") == (2, 3) and parse.shard(None) is None
    for text in ("4/3", "0/3", "1-3", ""):
        with pytest.raises(MaskTwinsError, match="1 <= i <= N"):
            parse.shard(text)
    assert parse.file_pair(" a.csv , b.h5 ") == ("a.csv", "b.h5")
    for text in ("a.csv", "a.csv,", "a,b,c"):
        with pytest.raises(MaskTwinsError, match="PRED,TRUTH"):
            parse.file_pair(text)


@pytest.mark.parametrize("argv, expected", [
    (["prepare", "stack", "{tmp}/o.zarr", "--images", "{tmp}/raw", "--label-map", "191=1"],
     "--label-map '191=1'"),
    (["prepare", "stack", "{tmp}/o.zarr", "--images", "{tmp}/raw", "--voxel-size", "50,4"],
     "--voxel-size '50,4'"),
    (["prepare", "cdeep3m", "{tmp}/c", "{tmp}/out", "--resample-to", "1,0,1"],
     "--resample-to '1,0,1'"),
    (["prepare", "synthetic", "{tmp}/s", "--shape", "8,8"], "--shape '8,8'"),
    (["prepare", "waspsyn", "{tmp}/w", "{tmp}/out", "--voxel-size", "8,8"], "--voxel-size '8,8'"),
    (["detect", "{tmp}/p.zarr/p", "-o", "{tmp}/p.csv", "--block-shape", "8,8,0"],
     "--block-shape '8,8,0'"),
    (["evaluate", "{tmp}/a.csv", "{tmp}/b.csv", "--task", "synapse", "--pair", "x.csv"],
     "--pair 'x.csv'"),
])
def test_cli_option_errors_come_before_any_work(tmp_path, argv, expected):
    result = invoke(*[part.format(tmp=tmp_path) for part in argv])
    assert_user_error(result, expected)
    assert not any(tmp_path.iterdir())  # nothing read or written: the option failed first
