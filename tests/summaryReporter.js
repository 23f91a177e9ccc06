// Ends every jest run with one plain line, "jest: N passed, N failed[, N skipped]", that CI and
// people can read without parsing jest's own layout.
class SummaryReporter {
    onRunComplete(_contexts, results) {
        const skipped = results.numPendingTests + results.numTodoTests;
        const failedSuites = results.numRuntimeErrorTestSuites;
        const extra = skipped > 0 ? `, ${skipped} skipped` : "";
        if (failedSuites > 0) console.log(`jest: ${failedSuites} test file(s) failed to run`);
        console.log(`jest: ${results.numPassedTests} passed, ${results.numFailedTests + failedSuites} failed${extra}`);
    }
}
module.exports = SummaryReporter;
