package cuda

import (
	"reflect"
	"testing"

	"github.com/ebitengine/purego"
)

type bindingTable struct {
	lib   string
	api   any // pointer to the API struct
	table []binding
}

func allTables() []bindingTable {
	d, n, l := new(driverAPI), new(nvrtcAPI), new(cublasLtAPI)
	return []bindingTable{{"libcuda", d, d.table()}, {"libnvrtc", n, n.table()}, {"libcublasLt", l, l.table()}}
}

// Every func field of an API struct is bound exactly once, under a unique
// symbol name, and every Go signature is one purego accepts (RegisterFunc
// checks the types without calling anything).
func TestBindingTables(t *testing.T) {
	for _, tb := range allTables() {
		v := reflect.ValueOf(tb.api).Elem()
		fields := map[uintptr]string{}
		for i := range v.NumField() {
			if v.Field(i).Kind() == reflect.Func {
				fields[v.Field(i).Addr().Pointer()] = v.Type().Field(i).Name
			}
		}
		names := map[string]bool{}
		bound := map[uintptr]bool{}
		for _, b := range tb.table {
			if names[b.name] {
				t.Errorf("%s: symbol %s bound twice", tb.lib, b.name)
			}
			names[b.name] = true
			p := reflect.ValueOf(b.fn).Pointer()
			if _, ok := fields[p]; !ok {
				t.Errorf("%s: %s is not bound to a field of the API struct", tb.lib, b.name)
			}
			bound[p] = true
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s: purego refuses the signature of %s: %v", tb.lib, b.name, r)
					}
				}()
				purego.RegisterFunc(b.fn, 1) // never called
			}()
		}
		for p, name := range fields {
			if !bound[p] {
				t.Errorf("%s: field %s has no symbol", tb.lib, name)
			}
		}
	}
}

// When the libraries are present (a GPU machine, or BERTQ_CUDA_LIB_DIR
// pointing at copies), every symbol must resolve.
func testSymbolsResolve(t *testing.T) {
	st := Probe()
	checked := 0
	for _, c := range []struct {
		lib   Library
		table []binding
	}{{st.Driver, new(driverAPI).table()}, {st.NVRTC, new(nvrtcAPI).table()}, {st.CublasLt, new(cublasLtAPI).table()}} {
		if c.lib.handle == 0 {
			continue
		}
		checked++
		for _, b := range c.table {
			if sym, err := purego.Dlsym(c.lib.handle, b.name); err != nil || sym == 0 {
				t.Errorf("%s lacks %s: %v", c.lib.Path, b.name, err)
			}
		}
	}
	if checked == 0 {
		t.Skipf("no CUDA library found here, symbols not checked (%v)", st.Err)
	}
}
