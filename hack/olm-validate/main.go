// olm-validate checks an OLM bundle directory offline with the validators of github.com/operator-framework/api
// (what `operator-sdk bundle validate --select-optional suite=operatorframework` runs), without building
// operator-sdk or opm and without pulling images. It prints every error and warning and exits 1 on any error,
// 2 when the bundle cannot be read.
package main

import (
	"fmt"
	"os"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: olm-validate BUNDLE_DIR")
		os.Exit(2)
	}
	bundle, err := manifests.GetBundleFromDir(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "olm-validate: cannot read the bundle in %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	// MultipleArchitecturesValidator is left out: it pulls the images.
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.AlphaDeprecatedAPIsValidator,
		validation.GoodPracticesValidator,
	)
	errors := 0
	for _, result := range validators.Validate(bundle.ObjectsToValidate()...) {
		for _, e := range result.Errors {
			errors++
			fmt.Printf("ERROR %s: %s\n", result.Name, e.Error())
		}
		for _, w := range result.Warnings {
			fmt.Printf("WARNING %s: %s\n", result.Name, w.Error())
		}
	}
	if errors > 0 {
		fmt.Fprintf(os.Stderr, "olm-validate: %d error(s)\n", errors)
		os.Exit(1)
	}
	fmt.Println("olm-validate: bundle valid")
}
