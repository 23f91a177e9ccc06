// Lint: typescript-eslint's recommended type-aware rules plus Pulumi's own (no Output in a plain
// template literal, where it would print "Calling [toString] on an [Output<T>]").
import tseslint from "typescript-eslint";
import pulumi from "@pulumi/eslint-plugin";

export default tseslint.config(
    { ignores: ["node_modules/**", "bin/**", "coverage/**", "eslint.config.mjs", "jest.config.js", "tests/summaryReporter.js"] },
    ...tseslint.configs.recommended,
    {
        files: ["**/*.ts"],
        languageOptions: {
            parserOptions: {
                project: [
                    "./tsconfig.json",
                    "./tests/e2e/tsconfig.json",
                    "./tests/drills/tsconfig.json",
                    "./bench/tsconfig.json",
                    "./testbed/lib/tsconfig.json",
                ],
                tsconfigRootDir: import.meta.dirname,
            },
        },
        plugins: { "@pulumi": pulumi },
        rules: {
            "@pulumi/no-output-in-template-literal": "error",
            "@pulumi/no-output-instance-in-template-literal": "error",
            "@typescript-eslint/no-floating-promises": "error",
        },
    },
    {
        // Tests poke at mocked provider inputs, which are untyped by nature.
        files: ["tests/**/*.ts", "bench/**/*.ts"],
        rules: {
            "@typescript-eslint/no-explicit-any": "off",
            "@typescript-eslint/no-require-imports": "off",
            "@typescript-eslint/no-non-null-assertion": "off",
        },
    },
);
