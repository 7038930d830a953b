"""Writes exportctl's corpus of hostile inputs: archives and SavedModels that try to reach
outside what they are (symlinks, `..`, devices, a second gzip stream, bombs, file and Python
ops, damaged graphs).

    python tests/hostile/generate.py OUT_DIR TOUCHED_DIR
    python tests/hostile/generate.py --toucher OUT_DIR TARGET_FILE [TAG]

OUT_DIR receives one file or folder per item and `corpus.json`, which lists each item with what
exportctl must say when it refuses it. TOUCHED_DIR is where the hostile models try to write:
after exportctl has looked at every item, it must still be empty.

Run with the managed runtime's Python (it needs TensorFlow for the SavedModels; the archives
need only the standard library). Nothing is random but the seeded mutations, so two runs write
the same corpus. The integration test `hostile.rs` runs it into `target/`.
"""

import gzip
import io
import json
import os
import random
import sys
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED = 12
ITEMS = []


def item(name, kind, expect):
    """Records an item. `expect`: strings exportctl's refusal must contain (a member, an op)."""
    ITEMS.append({"name": name, "kind": kind, "expect": expect})


# ---------------------------------------------------------------- SavedModels


def save_models(out, touched):
    import tensorflow as tf

    spec = tf.TensorSpec([None, 4], tf.float32, name="x")

    def save(name, fn, expect, extra=None):
        module = tf.Module()
        module.w = tf.Variable(tf.ones([4, 2]), name="w")
        module.serve = tf.function(lambda x: fn(module, x), input_signature=[spec])
        signatures = {"serving_default": module.serve.get_concrete_function()}
        if extra is not None:
            module.extra = tf.function(lambda x: extra(module, x), input_signature=[spec])
        tf.saved_model.save(module, os.path.join(out, name), signatures=signatures)
        if expect is not None:
            item(name, "saved-model", expect)

    def plain(m, x):
        return {"y": tf.matmul(x, m.w)}

    save("base_saved_model", plain, None)

    def writes_file(m, x):
        tf.io.write_file(os.path.join(touched, "written-by-model.txt"), tf.strings.as_string(tf.reduce_sum(x)))
        return {"y": tf.matmul(x, m.w)}

    save("op_write_file", writes_file, ["WriteFile"])

    def reads_file(m, x):
        text = tf.io.read_file("/etc/hostname")
        return {"y": tf.matmul(x, m.w), "host": tf.reshape(text, [1])}

    save("op_read_file", reads_file, ["ReadFile"])

    def reads_from_network(m, x):
        text = tf.io.read_file("gs://exportctl-hostile-corpus/secret")
        return {"y": tf.matmul(x, m.w), "remote": tf.reshape(text, [1])}

    save("op_read_file_from_network", reads_from_network, ["ReadFile"])

    def lists_files(m, x):
        return {"y": tf.matmul(x, m.w), "files": tf.io.matching_files("/etc/*")}

    save("op_matching_files", lists_files, ["MatchingFiles"])

    def prints_to_file(m, x):
        tf.print(x, output_stream="file://" + os.path.join(touched, "printed.txt"))
        return {"y": tf.matmul(x, m.w)}

    save("op_print_to_file", prints_to_file, ["PrintV2"])

    def runs_python(m, x):
        def touch(v):
            open(os.path.join(touched, "python-ran.txt"), "w").write("ran")
            return v

        return {"y": tf.py_function(touch, [tf.matmul(x, m.w)], tf.float32)}

    save("op_py_function", runs_python, ["EagerPyFunc"])

    def hidden_in_a_branch(m, x):
        def write():
            tf.io.write_file(os.path.join(touched, "branch.txt"), "branch")
            return tf.constant(1.0)

        flag = tf.cond(tf.reduce_sum(x) > -1e30, write, lambda: tf.constant(0.0))
        return {"y": tf.matmul(x, m.w) * flag}

    save("op_write_file_in_a_cond_branch", hidden_in_a_branch, ["WriteFile"])

    def saves_a_checkpoint(m, x):
        tf.raw_ops.SaveV2(
            prefix=os.path.join(touched, "ckpt"), tensor_names=["w"], shape_and_slices=[""], tensors=[m.w.read_value()]
        )
        return {"y": tf.matmul(x, m.w)}

    save("op_checkpoint_save_in_serving", saves_a_checkpoint, ["SaveV2"])

    def writes_in_another_function(m, x):
        tf.io.write_file(os.path.join(touched, "other.txt"), "other")
        return x

    save("op_write_file_in_an_exposed_function", plain, ["WriteFile"], extra=writes_in_another_function)

    # `tf.saved_model.load(path)` loads a lone meta graph whatever its tags: one tagged
    # `train` instead of `serve` runs all the same, so it is scanned all the same.
    save("op_write_file_tagged_train", writes_file, ["WriteFile"])
    retag(os.path.join(out, "op_write_file_tagged_train"), "train")


def retag(saved_model_dir, tag):
    """Gives every meta graph of the SavedModel in `saved_model_dir` the one tag `tag`."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.meta_info_def.tags[:] = [tag]
    with open(path, "wb") as f:
        f.write(saved_model.SerializeToString())


def damaged_graphs(out):
    """Truncated and mutated copies of the base model's saved_model.pb."""
    import shutil

    base = os.path.join(out, "base_saved_model")
    pb = open(os.path.join(base, "saved_model.pb"), "rb").read()

    def variant(name, data, expect, must_refuse=True):
        target = os.path.join(out, name)
        shutil.copytree(base, target)
        with open(os.path.join(target, "saved_model.pb"), "wb") as f:
            f.write(data)
        kind = "damaged-saved-model" if must_refuse else "mutated-saved-model"
        item(name, kind, expect)

    for i, cut in enumerate([0, 1, 2, 7, len(pb) // 3, len(pb) // 2, len(pb) - 1]):
        # Cut after its first field (or before any), the graph is a valid SavedModel of nothing.
        empty = cut == 0 or (cut == 2 and pb[0] == 0x08)
        variant(f"truncated_pb_{i}_{cut}", pb[:cut], ["no meta graph tagged"] if empty else ["saved_model.pb"])
    variant("garbage_pb", bytes(range(256)) * 4, ["saved_model.pb"])
    # A length prefix that claims 2^62 bytes.
    variant("huge_length_pb", b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\x3f" + b"\x00" * 16, ["saved_model.pb"])
    rng = random.Random(SEED)
    for i in range(24):
        data = bytearray(pb)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        # A flipped byte may leave a valid graph; what matters is a clean answer.
        variant(f"mutated_pb_{i}", bytes(data), [], must_refuse=False)
    os.makedirs(os.path.join(out, "pb_is_a_directory"))
    shutil.copytree(os.path.join(base, "variables"), os.path.join(out, "pb_is_a_directory", "variables"))
    os.makedirs(os.path.join(out, "pb_is_a_directory", "saved_model.pb"))
    item("pb_is_a_directory", "damaged-saved-model", ["saved_model.pb"])


# ---------------------------------------------------------------- archives


def base_members(out):
    """(name, bytes) of the base SavedModel's files, for archives that hold a real model."""
    base = os.path.join(out, "base_saved_model")
    members = []
    for root, _dirs, files in sorted(os.walk(base)):
        for f in sorted(files):
            path = os.path.join(root, f)
            members.append((os.path.relpath(path, base), open(path, "rb").read()))
    return members


def tar_members(members, extra=()):
    """Tar blocks of `members` (regular files) then `extra` TarInfos (any type), without the
    end-of-archive blocks."""
    out = bytearray()
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out += info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)
    for info, data in extra:
        info.size = len(data)
        out += info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)
    return bytes(out)


def tar_bytes(members, extra=()):
    """A whole tar: the members and the two zero blocks that end it."""
    return tar_members(members, extra) + b"\0" * 1024


def gz(data):
    return gzip.compress(data, mtime=0)


def special(name, kind, linkname="", devmajor=0, devminor=0):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    return info, b""


def write_archives(out, touched):
    members = base_members(out)

    def archive(name, data, expect):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        item(name, "archive", expect)

    def with_extra(name, extra, expect):
        archive(name, gz(tar_bytes(members, extra)), expect)

    with_extra("symlink_member.tar.gz", [special("evil-link", tarfile.SYMTYPE, "/etc/passwd")], ["evil-link", "symbolic link"])
    with_extra("symlink_to_touched.tar.gz", [special("variables/escape", tarfile.SYMTYPE, touched)], ["variables/escape"])
    with_extra("hardlink_member.tar.gz", [special("evil-hardlink", tarfile.LNKTYPE, "/etc/passwd")], ["evil-hardlink", "hard link"])
    with_extra("char_device_member.tar.gz", [special("dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3)], ["dev-null"])
    with_extra("block_device_member.tar.gz", [special("dev-sda", tarfile.BLKTYPE, devmajor=8, devminor=0)], ["dev-sda"])
    with_extra("fifo_member.tar.gz", [special("a-fifo", tarfile.FIFOTYPE)], ["a-fifo"])

    def regular(name, data=b"escaped"):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    with_extra("parent_dir_member.tar.gz", [regular("../escaped.txt")], ["../escaped.txt", ".."])
    with_extra("nested_parent_dir_member.tar.gz", [regular("variables/../../escaped.txt")], ["variables/../../escaped.txt"])
    with_extra("absolute_member.tar.gz", [regular(os.path.join(touched, "absolute.txt"))], ["absolute.txt", "absolute path"])

    # Two gzip streams: the first a clean model, the second a symlink `tar -xzf` would create.
    second = gz(tar_bytes([], [special("evil-link", tarfile.SYMTYPE, "/etc/passwd")]))
    archive("two_gzip_streams.tar.gz", gz(tar_bytes(members)) + second, ["second gzip member"])
    archive("data_after_tar_end.tar.gz", gz(tar_bytes(members) + b"#!/bin/sh\nrm -rf ~\n"), ["after the end of the tar"])
    archive(
        "second_tar_after_tar_end.tar.gz",
        gz(tar_bytes(members) + tar_bytes([], [special("evil-link", tarfile.SYMTYPE, "/etc/passwd")])),
        ["after the end of the tar"],
    )
    archive("garbage_after_gzip.tar.gz", gz(tar_bytes(members)) + b"trailing garbage", ["after the end of the gzip stream"])

    whole = gz(tar_bytes(members))
    archive("truncated_half.tar.gz", whole[: len(whole) // 2], ["not a readable .tar.gz"])
    archive("truncated_header.tar.gz", whole[:20], ["not a readable .tar.gz"])
    archive("not_gzip.tar.gz", tar_bytes(members), ["not a readable .tar.gz"])
    archive("empty.tar.gz", b"", ["not a readable .tar.gz"])

    pb_dir = tarfile.TarInfo("saved_model.pb")
    pb_dir.type = tarfile.DIRTYPE
    archive(
        "saved_model_pb_directory.tar.gz",
        gz(tar_bytes([(n, d) for n, d in members if n != "saved_model.pb"], [(pb_dir, b"")])),
        ["`saved_model.pb` is a directory"],
    )

    # 100,000 empty members: small on disk, refused at the member limit.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i in range(100_000):
            tar.addfile(tarfile.TarInfo(f"assets/{i}"))
    archive("hundred_thousand_members.tar.gz", gz(buffer.getvalue()), ["more than 10000 members"])

    # A gzip bomb: 1 GiB of zeros in one member, about 1 MB compressed; written at test time.
    info = tarfile.TarInfo("variables/variables.data-00000-of-00001")
    info.size = 1 << 30
    header = info.tobuf(tarfile.GNU_FORMAT)
    compressor = __import__("zlib").compressobj(9, 8, 31)
    parts = [compressor.compress(tar_members([(n, d) for n, d in members if not n.startswith("variables/variables.data")]))]
    parts.append(compressor.compress(header))
    zeros = b"\0" * (1 << 20)
    for _ in range(1 << 10):
        parts.append(compressor.compress(zeros))
    parts.append(compressor.compress(b"\0" * 1024))
    parts.append(compressor.flush())
    archive("gzip_bomb.tar.gz", b"".join(parts), ["variables/variables.data-00000-of-00001", "times the archive's size"])

    # A well-formed archive whose model writes a file: refused by the op scan, not the reader.
    hostile = []
    base = os.path.join(out, "op_write_file")
    for root, _dirs, files in sorted(os.walk(base)):
        for f in sorted(files):
            path = os.path.join(root, f)
            hostile.append((os.path.relpath(path, base), open(path, "rb").read()))
    archive("archive_of_a_model_that_writes_files.tar.gz", gz(tar_bytes(hostile)), ["WriteFile"])


def save_toucher(out, target, tag=None):
    """A Reusable SavedModel (the TF Hub guide's MyMulModel) whose `__call__` and
    `serving_default` write `target` and read it back: valid in every other way, so once its
    ops are allowed, validation passes and the file exists. With `tag`, its meta graph is
    tagged `tag` instead of `serve`."""
    import tensorflow as tf

    class FileToucher(tf.train.Checkpoint):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable(2.0)
            self.variables = [self.v]
            self.trainable_variables = [self.v]
            self.regularization_losses = [tf.function(input_signature=[])(lambda: 0.001 * self.v**2)]

        @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.float32, name="x")])
        def __call__(self, x):
            write = tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(x)))
            with tf.control_dependencies([write]):
                text = tf.io.read_file(target)
            return tf.multiply(x, self.v) + 0.0 * tf.cast(tf.strings.length(text), tf.float32)

    module = FileToucher()
    tf.saved_model.save(module, out, signatures={"serving_default": module.__call__.get_concrete_function()})
    if tag is not None:
        retag(out, tag)


def main():
    if sys.argv[1] == "--toucher":
        save_toucher(sys.argv[2], sys.argv[3], *sys.argv[4:5])
        return
    out, touched = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    os.makedirs(touched, exist_ok=True)
    save_models(out, touched)
    damaged_graphs(out)
    write_archives(out, touched)
    with open(os.path.join(out, "corpus.json"), "w") as f:
        json.dump({"seed": SEED, "items": ITEMS}, f, indent=1)
    print(f"{len(ITEMS)} hostile inputs in {out}")


if __name__ == "__main__":
    main()
