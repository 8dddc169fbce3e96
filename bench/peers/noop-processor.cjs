// BullMQ sandboxed processor for the benchmark: the same work as Bosun's built-in `noop`.
/* global module */
module.exports = async () => null;
