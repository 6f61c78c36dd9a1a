/* A shared object that is not a periscope plugin: no periscope_plugin symbol. */
__attribute__((visibility("default"))) int not_a_plugin(int x);

int not_a_plugin(int x)
{
	return x + 1;
}
