/** Unit tests run the whole program under strict Pulumi mocks; see tests/. */
module.exports = {
    preset: "ts-jest",
    testEnvironment: "node",
    roots: ["<rootDir>/tests"],
    testMatch: ["**/*.test.ts"],
    testPathIgnorePatterns: ["/node_modules/", "/tests/e2e/", "/tests/drills/"],
    testTimeout: 60000,
    reporters: ["default", "<rootDir>/tests/summaryReporter.js"],
};
