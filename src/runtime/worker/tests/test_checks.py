"""What a check hands over for exportctl to judge (exportctl_worker.checks.computed), and the
record of checks: the worker writes outputs, it never compares them with the reference."""

import os
import tempfile
import unittest

import numpy as np
from exportctl_worker.checks import Checks, computed

GOLDEN = {"outputs": [{"name": "logits"}, {"name": "ids"}]}


class ComputedTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.out = self.dir.name

    def tearDown(self):
        self.dir.cleanup()

    def load(self, file):
        return np.load(os.path.join(self.out, file), allow_pickle=False)

    def test_a_dict_is_matched_by_name_and_written_as_is(self):
        logits = np.array([[1.5, -2.0]], dtype=np.float64)
        ids = np.array([3, 4], dtype=np.int32)
        record = computed({"ids": ids, "logits": logits, "extra": logits}, GOLDEN, self.out, "serving_default", "serving_default")
        files = {"logits": "serving_default/0.npy", "ids": "serving_default/1.npy"}
        self.assertEqual(record, {"by": "serving_default", "outputs": files})
        # Written with their own dtype: judging it is exportctl's job.
        self.assertEqual(self.load("serving_default/0.npy").dtype, np.float64)
        np.testing.assert_array_equal(self.load("serving_default/1.npy"), ids)
        self.assertEqual(sorted(os.listdir(os.path.join(self.out, "serving_default"))), ["0.npy", "1.npy"])

    def test_a_missing_output_is_none(self):
        record = computed({"logits": np.zeros(2)}, GOLDEN, self.out, "c", "__call__")
        self.assertEqual(record["outputs"], {"logits": "c/0.npy", "ids": None})

    def test_a_sequence_is_matched_by_position_only_when_the_count_agrees(self):
        record = computed([np.zeros(1), np.ones(1)], GOLDEN, self.out, "c", "__call__")
        self.assertEqual(record["outputs"], {"logits": "c/0.npy", "ids": "c/1.npy"})
        np.testing.assert_array_equal(self.load("c/1.npy"), np.ones(1))
        record = computed([np.zeros(1)], GOLDEN, self.out, "d", "__call__")
        self.assertEqual(record["outputs"], {"logits": None, "ids": None})

    def test_a_single_output_is_the_only_golden_one(self):
        golden = {"outputs": [{"name": "y"}]}
        non_contiguous = np.arange(6, dtype=np.float32).reshape(2, 3).T
        record = computed(non_contiguous, golden, self.out, "c", "__call__")
        np.testing.assert_array_equal(self.load(record["outputs"]["y"]), non_contiguous)


class ChecksTest(unittest.TestCase):
    def test_a_computed_record_travels_with_its_check(self):
        checks = Checks()
        checks.add("serving_default", True, "", computed={"by": "x", "outputs": {}}, inputs=["a"])
        checks.add("load", True, "loaded")
        self.assertEqual(checks.items[0]["computed"], {"by": "x", "outputs": {}})
        self.assertEqual(checks.items[0]["details"]["inputs"], ["a"])
        self.assertNotIn("computed", checks.items[1])

    def test_an_unknown_check_name_is_refused(self):
        with self.assertRaises(ValueError):
            Checks().add("no_such_check", True, "")


if __name__ == "__main__":
    unittest.main()


class FingerprintTest(unittest.TestCase):
    """fingerprint tells whether a training step moved a variable: any change of its bytes, of
    any dtype or rank, and nothing else."""

    def test_a_one_ulp_step_changes_it_and_a_read_does_not(self):
        import tensorflow as tf
        from exportctl_worker.checks import fingerprint

        for value in (np.float32(3.0), np.arange(12, dtype=np.float16).reshape(3, 4), np.ones((2, 2, 2), np.float64)):
            v = tf.Variable(value)
            before = fingerprint(v)
            self.assertEqual(fingerprint(v), before)
            flat = v.numpy().reshape(-1).copy()
            flat[-1] = np.nextafter(flat[-1], np.inf)
            v.assign(flat.reshape(v.shape))
            self.assertNotEqual(fingerprint(v), before, value.dtype)

    def test_variables_of_different_sizes_never_agree(self):
        import tensorflow as tf
        from exportctl_worker.checks import fingerprint

        self.assertNotEqual(fingerprint(tf.Variable(np.zeros(2, np.float32))), fingerprint(tf.Variable(np.zeros(3, np.float32))))


class NonzeroTest(unittest.TestCase):
    def test_a_gradient_reaches_its_variable_when_an_element_is_not_zero(self):
        import tensorflow as tf
        from exportctl_worker.checks import nonzero

        self.assertFalse(nonzero(None))
        self.assertFalse(nonzero(tf.zeros((2, 3))))
        self.assertTrue(nonzero(tf.constant([0.0, 1e-30])))
        rows = tf.IndexedSlices(tf.constant([[0.0, 0.0]]), tf.constant([3]), tf.constant([5, 2]))
        self.assertFalse(nonzero(rows))
        self.assertTrue(nonzero(tf.IndexedSlices(tf.constant([[0.0, 2.0]]), tf.constant([3]), tf.constant([5, 2]))))
